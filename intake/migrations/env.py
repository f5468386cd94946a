"""Alembic environment: the URL comes from the caller (intake db upgrade), never from a file."""

from __future__ import annotations

from alembic import context

from intake.db import search
from intake.db.engine import make_engine
from intake.db.tables import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "intake.db.migrate sets sqlalchemy.url"

# The search's own tables (intake/db/search.py) are no model's: autogenerate leaves them alone.
include_name = search.include_name

if context.is_offline_mode():
    context.configure(
        url=url, target_metadata=Base.metadata, include_name=include_name, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(url)
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # Batch migrations rebuild tables (copy, drop, rename); with foreign keys enforced,
            # dropping a referenced table fails once it holds rows. This must run outside a
            # transaction, so on the driver's connection before SQLAlchemy begins one.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            include_name=include_name,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
