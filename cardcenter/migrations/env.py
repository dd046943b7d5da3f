"""Alembic environment: runs the packaged migrations on the centre's connection.

``cardcenter.core.db.upgrade`` passes its open connection in
``config.attributes["connection"]``; the ``alembic`` command line (for
engineers) builds an engine from ``sqlalchemy.url`` instead.
"""

from __future__ import annotations

from alembic import context

from cardcenter.core import models  # noqa: F401  (registers every table)
from cardcenter.core.db import Base, make_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
run_migrations_online()
