"""``tracker clients create|list|show|update``: the database directly, like ``tracker keys``.

Options arrive as text so that one rule set (``clients.schemas``, shared with
the admin API) judges them, and a mistake is one line naming the option.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from tracker import db, errors
from tracker.clients import overview, records, schemas
from tracker.console import views
from tracker.domain import durations
from tracker.settings import Settings

T = TypeVar("T")
NONE = "none"  # clears a limit or the default sender
ALL = "all"  # --senders all: every TRACKER_SENDER_NAMES
OPTIONS = {  # field -> its option, so an error names what the user typed
    "name": "NAME",
    schemas.SENDERS: "--senders",
    schemas.DEFAULT_SENDER: "--default-sender",
    "rate_per_minute": "--rate-per-minute",
    "daily_cap": "--daily-cap",
    "high_per_minute": "--high-per-minute",
    "weight": "--weight",
    "retention_body": "--retention-body",
    "retention_contact": "--retention-contact",
    "retention_message": "--retention-message",
}

clients_cli = typer.Typer(
    help="Clients: the internal apps that own keys, messages and limits.", no_args_is_help=True
)

Name = Annotated[str, typer.Argument(help="The client's name (letters, digits, '-', '_').")]
Senders = Annotated[
    str | None,
    typer.Option(
        "--senders", help="Comma-separated subset of TRACKER_SENDER_NAMES; 'all' for every one."
    ),
]
DefaultSender = Annotated[
    str | None,
    typer.Option(help="One of its senders; 'none': the first of them."),
]
RatePerMinute = Annotated[
    str | None, typer.Option(help="Messages accepted in any 60 s; 'none' removes the limit.")
]
DailyCap = Annotated[
    str | None, typer.Option(help="Messages accepted per day; 'none' removes the limit.")
]
HighPerMinute = Annotated[
    str | None,
    typer.Option(help="high-priority messages accepted in any 60 s; 'none' removes the limit."),
]
Weight = Annotated[
    str | None, typer.Option(help=f"Its share of each dispatch lane, 1-{schemas.MAX_WEIGHT}.")
]
_OVERRIDE = "(7d, 24h, 'keep'); 'none': TRACKER_RETENTION_{}."
RetentionBody = Annotated[
    str | None,
    typer.Option(
        help="How long bodies are kept after a message is final " + _OVERRIDE.format("BODY")
    ),
]
RetentionContact = Annotated[
    str | None,
    typer.Option(
        help="How long numbers are kept before their keyed hash replaces them "
        + _OVERRIDE.format("CONTACT")
    ),
]
RetentionMessage = Annotated[
    str | None,
    typer.Option(
        help="How long messages are kept at all after they are final " + _OVERRIDE.format("MESSAGE")
    ),
]


def register(cli: typer.Typer, load_settings: Callable[[], Settings]) -> None:
    """Add ``tracker clients`` to the root command (which owns the settings' loading)."""
    _state["load_settings"] = load_settings
    cli.add_typer(clients_cli, name="clients")


_state: dict[str, Callable[[], Settings]] = {}  # filled by register()


def _with_database(work: Callable[[db.Database, Settings], Awaitable[T]]) -> tuple[T, Settings]:
    settings = _state["load_settings"]()

    async def run() -> T:
        database = db.Database(settings.async_database_url)
        try:
            return await work(database, settings)
        finally:
            await database.dispose()

    return asyncio.run(run()), settings


def options_given(**given: str | None) -> dict[str, Any]:
    """The options given, as the JSON the API would take ('none' is null)."""
    data: dict[str, Any] = {}
    for field, raw in given.items():
        if raw is None:
            continue
        text = raw.strip()
        if field == schemas.SENDERS:
            names = [n.strip() for n in text.split(",") if n.strip()]
            data[field] = None if text.lower() == ALL else names
        elif field == schemas.DEFAULT_SENDER or field in records.RETENTION:
            data[field] = None if text.lower() == NONE else text
        elif text.lower() == NONE and field != "weight":
            data[field] = None
        elif text.isdecimal() and text.isascii():
            data[field] = int(text)
        else:
            hint = "" if field == "weight" else ", or 'none' to remove it"
            raise errors.ValidationFailed({OPTIONS[field]: [f"must be a whole number{hint}"]})
    return data


def as_options(problems: Mapping[str, list[str]]) -> errors.ValidationFailed:
    """The API's field errors renamed to the CLI's options."""
    renamed: dict[str, list[str]] = {}
    for field, messages in problems.items():
        option = OPTIONS.get(field.split("[", 1)[0].split(".", 1)[0], field)
        renamed.setdefault(option, []).extend(messages)
    return errors.ValidationFailed(renamed)


@clients_cli.command("create")
def create(  # noqa: PLR0917 - one parameter per CLI option
    name: Name,
    senders: Senders = None,
    default_sender: DefaultSender = None,
    rate_per_minute: RatePerMinute = None,
    daily_cap: DailyCap = None,
    high_per_minute: HighPerMinute = None,
    weight: Weight = None,
    retention_body: RetentionBody = None,
    retention_contact: RetentionContact = None,
    retention_message: RetentionMessage = None,
) -> None:
    """Add a client. With no options: every sender, no limits, weight 1."""
    data = options_given(
        sender_names=senders,
        default_sender=default_sender,
        rate_per_minute=rate_per_minute,
        daily_cap=daily_cap,
        high_per_minute=high_per_minute,
        weight=weight,
        retention_body=retention_body,
        retention_contact=retention_contact,
        retention_message=retention_message,
    )

    async def work(database: db.Database, settings: Settings) -> records.Client:
        try:
            checked, values = schemas.parse_new({"name": name, **data}, settings)
        except errors.ValidationFailed as exc:
            raise as_options(exc.errors) from None
        async with database.write() as session:
            return await records.create(session, checked, **values)

    created, _settings = _with_database(work)
    typer.echo(f"created client {created.name}: {_summary(created)}")


@clients_cli.command("update")
def update(  # noqa: PLR0917 - one parameter per CLI option
    name: Name,
    senders: Senders = None,
    default_sender: DefaultSender = None,
    rate_per_minute: RatePerMinute = None,
    daily_cap: DailyCap = None,
    high_per_minute: HighPerMinute = None,
    weight: Weight = None,
    retention_body: RetentionBody = None,
    retention_contact: RetentionContact = None,
    retention_message: RetentionMessage = None,
) -> None:
    """Change some of a client's settings; 'none' removes a limit (--daily-cap none)."""
    data = options_given(
        sender_names=senders,
        default_sender=default_sender,
        rate_per_minute=rate_per_minute,
        daily_cap=daily_cap,
        high_per_minute=high_per_minute,
        weight=weight,
        retention_body=retention_body,
        retention_contact=retention_contact,
        retention_message=retention_message,
    )
    if not data:
        raise ValueError("nothing to change: give at least one option (see --help)")

    async def work(database: db.Database, settings: Settings) -> records.Client:
        async with database.write() as session:
            current = await records.get(session, name)
            if current is None:
                raise errors.NotFound(f"no client named {name!r}")
            try:
                changes = schemas.parse_changes(data, current, settings)
            except errors.ValidationFailed as exc:
                raise as_options(exc.errors) from None
            return await records.update(session, name, **changes)

    changed, _settings = _with_database(work)
    typer.echo(f"updated client {changed.name}: {_summary(changed)}")


@clients_cli.command("list")
def list_clients() -> None:
    """Every client: weight, limits, senders and how many active keys it holds."""

    async def work(
        database: db.Database, _settings: Settings
    ) -> tuple[list[records.Client], dict[str, int]]:
        async with database.read() as session:
            return await records.list_all(session), await overview.active_key_counts(session)

    (found, active), settings = _with_database(work)
    table = Table(
        "name", "weight", "rate/min", "daily cap", "high/min", "senders",
        "kept: body/number/message", "active keys",
    )  # fmt: skip
    for client in found:
        table.add_row(
            client.name,
            str(client.weight),
            _limit(client.rate_per_minute),
            _limit(client.daily_cap),
            _limit(client.high_per_minute),
            _senders(client, settings),
            "/".join(_retention(client, settings).values()),
            str(active.get(client.name, 0)),
        )
    views.show(Console(), table)  # plain in a pipe


@clients_cli.command("show")
def show(name: Name) -> None:
    """One client: its settings, its keys and its messages by status."""

    async def work(
        database: db.Database, _settings: Settings
    ) -> tuple[records.Client, list[overview.Key], dict[str, int]]:
        async with database.read() as session:
            found = await records.get(session, name)
            if found is None:
                raise errors.NotFound(f"no client named {name!r}")
            keys = await overview.keys_of(session, name)
            return found, keys, await overview.message_counts(session, name)

    (client, keys, counts), settings = _with_database(work)
    console = Console()
    console.print(f"client {client.name}")
    console.print(f"  senders          {_senders(client, settings)}")
    console.print(f"  weight           {client.weight}")
    console.print(f"  rate per minute  {_limit(client.rate_per_minute)}")
    console.print(f"  daily cap        {_limit(client.daily_cap)}")
    console.print(f"  high per minute  {_limit(client.high_per_minute)}")
    for kept, period in _retention(client, settings).items():
        console.print(f"  keep {kept:<12}{period}")
    table = Table("key", "prefix", "scopes", "created", "state", title="keys")
    for key in keys:
        created = key.created_at.isoformat(timespec="seconds")
        state = "revoked" if key.revoked else "active"
        table.add_row(key.name, key.prefix + "…", ",".join(key.scopes), created, state)
    views.show(console, table)
    by_status = ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))
    console.print(f"messages: {by_status or 'none'}")


def _retention(client: records.Client, settings: Settings) -> dict[str, str]:
    """How long it keeps bodies, numbers and messages; '*' marks a setting's value."""
    own = (client.retention_body, client.retention_contact, client.retention_message)
    default = (settings.retention_body, settings.retention_contact, settings.retention_message)
    return {
        kept: value if value is not None else durations.format_period(fallback) + "*"
        for kept, value, fallback in zip(("body", "number", "message"), own, default, strict=True)
    }


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)


def _senders(client: records.Client, settings: Settings) -> str:
    """Its senders, the default first and marked with '*'."""
    senders = client.sender_names or settings.sender_names
    default = client.default_sender or senders[0]
    ordered = [default, *(s for s in senders if s != default)]
    text = ",".join(f"{s}*" if s == default else s for s in ordered)
    return text if client.sender_names is not None else f"{text} (all)"


def _summary(client: records.Client) -> str:
    limits = {
        "rate/min": client.rate_per_minute,
        "daily cap": client.daily_cap,
        "high/min": client.high_per_minute,
    }
    shown = ", ".join(f"{k} {v}" for k, v in limits.items() if v is not None)
    return f"weight {client.weight}; " + (shown or "no limits")
