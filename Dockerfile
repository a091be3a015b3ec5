# Production image: slim Python, pinned dependencies, non-root, gunicorn sync workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=8000

WORKDIR /app
RUN groupadd --system clinic && useradd --system --gid clinic --home /app clinic

COPY pyproject.toml constraints.txt alembic.ini gunicorn.conf.py ./
COPY service ./service
COPY migrations ./migrations
# Editable install: the service finds alembic.ini and migrations/ beside its package.
RUN pip install -c constraints.txt -e . && mkdir -p /app/instance && chown clinic:clinic /app/instance

USER clinic
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8000\")}/healthz', timeout=2)"

# Migrate to head, then serve (one sync worker per core unless WEB_CONCURRENCY is set).
# Run the reminder/webhook dispatcher as one or more further containers of this image with
# the command: python -m service.scheduler
CMD ["sh", "-c", "flask --app service.wsgi migrate && exec gunicorn --config gunicorn.conf.py service.wsgi:app"]
