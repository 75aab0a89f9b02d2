"""Alembic environment: async engines, batch mode for SQLite.

The URL comes from the alembic config (set by ``tracker.migrate``) or, when
alembic is run by hand, from the TRACKER_* settings. A caller that already has
a connection passes it as ``config.attributes["connection"]``.
"""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from tracker import db, models
from tracker.settings import Settings

config = context.config
target_metadata = models.Base.metadata


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async(url: str) -> None:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_with)
            await connection.commit()
    finally:
        await engine.dispose()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or Settings.load().async_database_url
    asyncio.run(run_async(url))


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
main()
