"""``tracker retention run [--dry-run]``: the retention job once, against the database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tracker import db
from tracker.console import views
from tracker.domain import durations
from tracker.privacy import retention
from tracker.settings import Settings

retention_cli = typer.Typer(
    help="Retention: bodies redacted, numbers pseudonymised, old messages deleted.",
    no_args_is_help=True,
)
_state: dict[str, Callable[[], Settings]] = {}  # filled by register()


def register(cli: typer.Typer, load_settings: Callable[[], Settings]) -> None:
    """Add ``tracker retention`` to the root command (which owns the settings' loading)."""
    _state["load_settings"] = load_settings
    cli.add_typer(retention_cli, name="retention")


@retention_cli.command("run")
def run(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what each rule would change; change nothing.")
    ] = False,
) -> None:
    """Run the retention job once (the leader also runs it every TRACKER_RETENTION_INTERVAL).

    Redacts bodies after TRACKER_RETENTION_BODY, pseudonymises numbers after
    TRACKER_RETENTION_CONTACT and deletes messages after TRACKER_RETENTION_MESSAGE
    (each from when the message became final; clients may override them), and
    prunes webhook attempts and quarantined callbacks after TRACKER_RETENTION_BODY.
    """
    settings = _state["load_settings"]()

    async def work() -> retention.Result:
        database = db.Database(settings.async_database_url)
        try:
            return await retention.run(database, settings, dry_run=dry_run)
        finally:
            await database.dispose()

    result = asyncio.run(work())
    console = Console()
    console.print(_periods(settings))
    views.show(console, table(result))


def _periods(settings: Settings) -> str:
    periods = (settings.retention_body, settings.retention_contact, settings.retention_message)
    body, contact, message = (durations.format_period(p) for p in periods)
    return f"settings: bodies {body}, numbers {contact}, messages {message} (clients may override)"


def table(result: retention.Result) -> Table:
    """Rows changed (or, dry, due) by rule and table, narrow enough for 80 columns."""
    verb = "would change" if result.dry_run else "changed"
    shown = Table("rule", "table", verb, title="retention (dry run)" if result.dry_run else None)
    rows = [
        ("body", "messages", result.redacted),
        *(("contact", k, v) for k, v in result.pseudonymised.counts().items()),
        *(("message", k, v) for k, v in vars(result.deleted).items()),
        ("prune", "webhook_attempts", result.webhook_attempts),
        ("prune", "quarantine_entries", result.quarantine_entries),
    ]
    for rule, name, count in rows:
        if result.dry_run and rule in {"contact", "message"} and name != "messages":
            continue  # a dry run counts the messages each rule is due on
        shown.add_row(rule, name, str(count))
    return shown
