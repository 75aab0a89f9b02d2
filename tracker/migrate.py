"""Schema migrations, run from the installed package (no alembic.ini needed)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import exc as alembic_exc
from sqlalchemy import Column, MetaData, String, Table, inspect, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from tracker import errors, logs

log = logs.get_logger(__name__)


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """Alembic configured in code, pointing at the migrations inside the package."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("tracker.migrations")))
    if url:
        # ConfigParser treats % as interpolation; escape it for passwords.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _off_the_loop(work: Callable[[], None]) -> None:
    """Run blocking alembic work; in a thread if this one runs an event loop.

    Alembic's env.py starts its own loop (``asyncio.run``), which cannot nest.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        work()
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(work).result()


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` (blocking)."""
    _off_the_loop(lambda: command.upgrade(alembic_config(url), revision))


def downgrade(url: str, revision: str = "base") -> None:
    _off_the_loop(lambda: command.downgrade(alembic_config(url), revision))


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def is_known_revision(revision: str) -> bool:
    """Whether this code's migrations contain ``revision`` (else the database is newer)."""
    if not revision:  # alembic asserts on an empty id rather than raising its error
        return False
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except alembic_exc.CommandError:  # "Can't locate revision": one this code does not know
        return False


_VERSION_TABLE = Table("alembic_version", MetaData(), Column("version_num", String(32)))


def _current_revision(connection: Connection) -> str | None:
    # Read directly: MigrationContext.configure logs two INFO lines per call,
    # and readiness asks every few seconds.
    if not inspect(connection).has_table(_VERSION_TABLE.name):
        return None
    revision: str | None = connection.execute(select(_VERSION_TABLE.c.version_num)).scalar()
    return revision


async def current_revision(connection: AsyncConnection) -> str | None:
    """The revision the database is at (None for an empty database)."""
    return await connection.run_sync(_current_revision)


SCHEMA_CHECK_TIMEOUT_SECONDS = 5.0


class SchemaBehind(errors.ConfigurationError):
    """The database's schema is older than this code: ``tracker db upgrade`` is needed."""


def prepare_at_start(url: str) -> None:
    """Before ``serve`` or ``worker`` starts (blocking, no event loop running).

    The embedded SQLite database is migrated here. A PostgreSQL schema is left
    to ``tracker db upgrade`` (one migrator per deployment): one behind this
    code stops the start with that advice, where it used to log ``no such
    table`` every second. An unreachable database does not stop the start: the
    callback receiver spools through an outage, restarts included.
    """
    if url.startswith("sqlite"):
        upgrade(url)
        return
    try:
        current = asyncio.run(_revision_at(url))
    except (OSError, TimeoutError, sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        log.warning("schema_check_skipped", reason="database unreachable", error=type(exc).__name__)
        return
    head = head_revision()
    # An unknown revision is a newer one (a rollout in progress; migrations are additive).
    if current != head and (current is None or is_known_revision(current)):
        raise SchemaBehind(
            f"the database schema is at {current or 'nothing'}, this code needs {head}: "
            "run `tracker db upgrade` first"
        )


async def _revision_at(url: str) -> str | None:
    engine = create_async_engine(url)
    try:
        async with asyncio.timeout(SCHEMA_CHECK_TIMEOUT_SECONDS), engine.connect() as connection:
            return await current_revision(connection)
    finally:
        await engine.dispose()
