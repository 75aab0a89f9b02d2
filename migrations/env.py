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
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a table as copy, drop, rename: with foreign keys
        # on, dropping messages would cascade to every event. SQLite ignores
        # this pragma inside a transaction, so it goes to the driver's connection
        # before SQLAlchemy begins one.
        _sqlite_pragma(connection, "foreign_keys=OFF")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migration broke {len(broken)} foreign keys: {broken[:5]}")
    if sqlite:
        _sqlite_pragma(connection, "foreign_keys=ON")


def _sqlite_pragma(connection: Connection, pragma: str) -> None:
    if connection.in_transaction():
        connection.commit()  # a caller's connection: what it did so far is done
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


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
