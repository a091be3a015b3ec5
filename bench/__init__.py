"""Benchmarks of the clinic scheduling service; they print figures and never assert on time.

``python -m bench`` runs them all; each also runs alone:

- ``python -m bench.slots``: slot search, in-process (loading vs computing) and over HTTP
  against a precomputed floor served by the same gunicorn settings;
- ``python -m bench.race``: 50 clients booking the same slot at once, PostgreSQL and SQLite;
- ``python -m bench.writes``: booking writes against a bare Flask + SQLAlchemy INSERT;
- ``python -m bench.reminders``: 10,000 due reminders sent by two scheduler processes;
- ``python -m bench.outbox_kill``: 2,048 due emails, two schedulers, one killed with SIGKILL
  mid-run: duplicates and lost messages.

Every benchmark builds a fresh database of its own (PostgreSQL ``bench_<random>`` migrated
with Alembic, or a temporary SQLite file), fills it with fictional data, and removes it
afterwards, also when it fails. ``BENCH_POSTGRES_ADMIN_URL`` overrides the PostgreSQL
server (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``).
"""
