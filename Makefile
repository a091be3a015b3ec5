# The two set-up commands: `make run` (service + demo data on SQLite) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app service.wsgi
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install run scheduler test test-sqlite test-postgresql bench openapi lint migrate seed clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

migrate: install
	$(FLASK) migrate

seed: migrate
	$(FLASK) seed-demo

# The API and a reminder dispatcher side by side; Ctrl-C stops both. Nothing leaves the
# machine unless configured: reminders and webhook deliveries go to the scheduler's log.
run: seed
	@echo "Swagger UI: http://$${HOST:-127.0.0.1}:$${PORT:-8000}/docs    Day board: http://$${HOST:-127.0.0.1}:$${PORT:-8000}/board"
	@trap 'kill -TERM $$scheduler 2>/dev/null; wait $$scheduler' EXIT; trap 'exit 130' INT TERM; \
	REMINDER_CHANNEL=$${REMINDER_CHANNEL:-log} WEBHOOK_CHANNEL=$${WEBHOOK_CHANNEL:-log} \
	$(BIN)/python -m service.scheduler & scheduler=$$!; \
	$(BIN)/gunicorn --config gunicorn.conf.py service.wsgi:app

scheduler: migrate
	$(BIN)/python -m service.scheduler

# Both passes always run; the target fails if either did.
test: install
	@status=0; \
	TEST_DATABASE=sqlite $(BIN)/python -m pytest || status=1; \
	TEST_DATABASE=postgresql $(BIN)/python -m pytest || status=1; \
	exit $$status

test-sqlite: install
	TEST_DATABASE=sqlite $(BIN)/python -m pytest

test-postgresql: install
	TEST_DATABASE=postgresql $(BIN)/python -m pytest

bench: install
	$(BIN)/python -m bench

openapi: install
	DATABASE_URL=sqlite:// $(FLASK) openapi write --format=json openapi/openapi.json

lint: install
	$(BIN)/python -m pip install --quiet -c constraints.txt ruff==0.14.6
	$(BIN)/ruff check service tests migrations $(wildcard bench)

clean:
	rm -rf $(VENV) instance *.egg-info
