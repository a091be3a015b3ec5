"""Alembic environment: the URL comes from the config (set by service.migrate) or
DATABASE_URL; every models module is imported so autogenerate sees the whole schema."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from service.config import Settings
from service.db import UTCDateTime, make_engine, normalize_url
from service.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def render_item(type_: str, obj: object, autogen_context) -> str | bool:
    """Render the service's column types as plain SQLAlchemy types: migrations must not
    import application code that may change later."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _url() -> str:
    return normalize_url(config.get_main_option("sqlalchemy.url")
                         or Settings.from_env().database_url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True, compare_type=True, render_item=render_item)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # immediate=False: Alembic manages its own transaction on SQLite.
    engine = make_engine(_url(), immediate=False)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True, compare_type=True, render_item=render_item)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
