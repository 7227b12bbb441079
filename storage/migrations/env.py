"""Alembic environment. Migrations run on a connection handed in by storage.db.migrate, or,
from the alembic command line, on a synchronous engine made from the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from storage.models import Base

target_metadata = Base.metadata


def _sync_url(url: str) -> str:
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    url = _sync_url(context.config.get_main_option("sqlalchemy.url") or "")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
