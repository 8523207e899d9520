"""Alembic environment: run by :meth:`dialbridge.store.db.Database.migrate` with a live
connection in ``config.attributes['connection']``; no alembic.ini needed."""

from alembic import context

from dialbridge.store.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
