"""The migrations build exactly the schema the models describe (``alembic check``)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.models import Base


def test_migrations_match_the_models(app):
    engine = app.extensions["clinic.database"].writer
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
