"""``tracker privacy ...``: erasure on request, the database directly (like ``tracker keys``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tracker import db, errors
from tracker.console import views
from tracker.domain import recipients
from tracker.privacy import erasure
from tracker.settings import Settings

privacy_cli = typer.Typer(
    help="Personal data: erase a number on request (bodies redacted, number pseudonymised).",
    no_args_is_help=True,
)
_state: dict[str, Callable[[], Settings]] = {}  # filled by register()


def register(cli: typer.Typer, load_settings: Callable[[], Settings]) -> None:
    """Add ``tracker privacy`` to the root command (which owns the settings' loading)."""
    _state["load_settings"] = load_settings
    cli.add_typer(privacy_cli, name="privacy")


@privacy_cli.command("erase")
def erase(
    to: Annotated[
        str, typer.Option("--to", help="The number, in any usual form (0712 345 678, +2547...).")
    ],
) -> None:
    """Erase a number on request, across every client.

    Cancels what is still queued to it, removes the body of every message to it,
    and replaces the number by its keyed hash in messages, events, callback
    receipts, webhook logs and stored Idempotency-Key answers. Safe to run again.
    Prints the rows changed per table; an audit event (actor "cli") keeps the
    same counts, never the number.
    """
    try:
        msisdn = recipients.normalise_recipient(to).msisdn
    except errors.InvalidRecipient as exc:
        raise errors.ValidationFailed({"--to": [str(exc)]}) from None
    settings = _state["load_settings"]()
    erased = asyncio.run(_erase(settings, msisdn))
    table = Table("what", "rows", title="erased (number kept only as its keyed hash)")
    for name, count in erased.counts().items():
        table.add_row(name.replace("_", " "), f"{count:,}")
    views.show(Console(), table)


async def _erase(settings: Settings, msisdn: str) -> erasure.Erased:
    database = db.Database(settings.async_database_url)
    try:
        key = settings.pseudonym_key_bytes()
        return await erasure.erase(database, msisdn, key, erasure.CLI_ACTOR)
    finally:
        await database.dispose()
