"""``tracker webhooks ...``: endpoints and their deliveries, the database directly.

Like ``tracker clients``: options are judged by the API's rules (``webhooks.schemas``),
and a mistake is one line naming the option. ``test`` queues a ``webhook.test``
delivery and waits for a running ``serve`` or ``worker`` to attempt it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, TypeVar

import pydantic_core
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import clock, db, errors, models
from tracker.clients import records
from tracker.console import views
from tracker.settings import Settings
from tracker.webhooks import endpoints, events, recovery, schemas, signing

T = TypeVar("T")
POLL_SECONDS = 0.2
SHOWN = ("id", "client", "url", "events", "description", "enabled", "disabled_at",
         "disabled_reason", "failing_since", "previous_secret_until", "created_at")  # fmt: skip
OPTIONS = {"url": "--url", "events": "--events", "description": "--description",
           "client": "--client", "since": "--since", "status": "--status", "limit": "--limit",
           "cursor": "--cursor"}  # fmt: skip

webhooks_cli = typer.Typer(
    help="Webhooks: push messages' status changes to clients' endpoints.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)

EndpointId = Annotated[str, typer.Argument(help="The endpoint's id (a UUID).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead.")]
Events = Annotated[
    str | None,
    typer.Option(help="Comma-separated message events (message.delivered,...); default: all."),
]
Description = Annotated[str | None, typer.Option(help="What it is for (at most 255 characters).")]

_state: dict[str, Callable[[], Settings]] = {}  # filled by register()


def register(cli: typer.Typer, load_settings: Callable[[], Settings]) -> None:
    """Add ``tracker webhooks`` to the root command (which owns the settings' loading)."""
    _state["load_settings"] = load_settings
    cli.add_typer(webhooks_cli, name="webhooks")


def _run(work: Callable[[db.Database, Settings], Awaitable[T]]) -> T:
    settings = _state["load_settings"]()

    async def run() -> T:
        database = db.Database(settings.async_database_url)
        try:
            return await work(database, settings)
        except errors.ValidationFailed as exc:
            raise as_options(exc.errors) from None
        finally:
            await database.dispose()

    return asyncio.run(run())


def as_options(problems: Mapping[str, list[str]]) -> errors.ValidationFailed:
    """The API's field errors renamed to the CLI's options."""
    return errors.ValidationFailed({OPTIONS.get(k, k): v for k, v in problems.items()})


def _endpoint_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise errors.NotFound(f"no webhook endpoint {errors.echo(text)}") from None


async def _existing(session: AsyncSession, endpoint_id: uuid.UUID) -> endpoints.Endpoint:
    found = await endpoints.get(session, endpoint_id)
    if found is None:
        raise errors.NotFound(f"no webhook endpoint {endpoint_id}")
    return found


def _print_json(body: object) -> None:
    typer.echo(pydantic_core.to_json(body, indent=2).decode())


def _summary(endpoint: endpoints.Endpoint) -> str:
    state = "enabled" if endpoint.enabled else f"disabled ({endpoint.disabled_reason})"
    return f"{endpoint.url}, {len(endpoint.events)} events, {state}"


def _events_option(raw: str | None) -> list[str] | None:
    return None if raw is None else [n.strip() for n in raw.split(",") if n.strip()]


@webhooks_cli.command("create")
def create(
    client: Annotated[str, typer.Option(help="The client whose messages it receives.")],
    url: Annotated[str, typer.Option(help="https URL (http only to an allowed loopback).")],
    events: Events = None,
    description: Description = None,
    as_json: AsJson = False,
) -> None:
    """Add an endpoint. Its signing secret is printed once, alone on the last line."""
    given = {"url": url, "events": _events_option(events), "description": description}

    async def work(database: db.Database, settings: Settings) -> endpoints.Endpoint:
        new = schemas.validated(schemas.NewEndpoint, {**given, "client": client})
        subscription = schemas.subscription(new.events)
        checked = await schemas.check_url(new.url, settings)
        async with database.write() as session:
            if await records.get(session, client) is None:
                raise errors.NotFound(f"no client named {client!r}: create it first")
            return await endpoints.create(
                session,
                client=client,
                url=checked,
                subscription=subscription,
                description=new.description,
                secret=signing.new_secret(),
                now=clock.utcnow(),
            )

    created = _run(work)
    if as_json:
        _print_json(schemas.with_secret(created))
        return
    err.print(f"created webhook endpoint {created.id} of client {client}: {_summary(created)}")
    err.print("its signing secret, shown only now (store it with the receiver):")
    typer.echo(created.secret)


@webhooks_cli.command("list")
def list_endpoints(
    client: Annotated[str | None, typer.Option(help="Only this client's.")] = None,
    as_json: AsJson = False,
) -> None:
    """Every endpoint (or one client's): its url, events and state."""

    async def work(database: db.Database, _settings: Settings) -> list[endpoints.Endpoint]:
        async with database.read() as session:
            return await endpoints.list_of(session, client)

    found = _run(work)
    if as_json:
        _print_json({"webhooks": [schemas.endpoint_out(e) for e in found]})
        return
    table = Table("id", "client", "url", "events", "state", "failing since")
    for endpoint in found:
        state = "enabled" if endpoint.enabled else f"disabled: {endpoint.disabled_reason}"
        events_text = (
            "all" if endpoint.events == events.MESSAGE_EVENTS else ",".join(endpoint.events)
        )
        since = (
            endpoint.failing_since.isoformat(timespec="seconds") if endpoint.failing_since else "-"
        )
        table.add_row(str(endpoint.id), endpoint.client, endpoint.url, events_text, state, since)
    views.show(out, table)  # plain in a pipe


@webhooks_cli.command("show")
def show(endpoint_id: EndpointId, as_json: AsJson = False) -> None:
    """One endpoint: its settings, backlog, failures and last attempt (never its secret)."""

    async def work(
        database: db.Database, _settings: Settings
    ) -> tuple[endpoints.Endpoint, recovery.Overview]:
        async with database.read() as session:
            found = await _existing(session, _endpoint_id(endpoint_id))
            return found, await recovery.overview(session, found.id)

    found, counts = _run(work)
    body = schemas.detail_out(found, counts)
    if as_json:
        _print_json(body)
        return
    for name in SHOWN:
        value = body[name]
        shown = ",".join(value) if isinstance(value, list) else ("-" if value is None else value)
        out.print(f"{name:<22} {shown}")
    for name, value in body["deliveries"].items():
        out.print(f"{name:<22} {'-' if value is None else value}")


@webhooks_cli.command("update")
def update(  # noqa: PLR0917 - one parameter per CLI option
    endpoint_id: EndpointId,
    url: Annotated[str | None, typer.Option(help="A new URL, vetted like a new one's.")] = None,
    events: Events = None,
    description: Description = None,
    enable: Annotated[
        bool | None,
        typer.Option(
            "--enable/--disable",
            help="Resume deliveries (clears the failure run) or stop them.",
            show_default=False,
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Change an endpoint; --disable fails its backlog (recover brings it back)."""
    given: dict[str, Any] = {"url": url, "description": description, "enabled": enable}
    given = {k: v for k, v in given.items() if v is not None}
    if events is not None:
        given["events"] = _events_option(events)
    if not given:
        raise ValueError("nothing to change: give at least one option (see --help)")

    async def work(database: db.Database, settings: Settings) -> endpoints.Endpoint:
        checked = schemas.validated(schemas.EndpointChanges, given)
        new_url = None if checked.url is None else await schemas.check_url(checked.url, settings)
        changes = schemas.changes_of(checked, new_url)
        async with database.write() as session:
            return await recovery.change_endpoint(session, _endpoint_id(endpoint_id), changes)

    changed = _run(work)
    if as_json:
        _print_json(schemas.endpoint_out(changed))
        return
    out.print(f"updated webhook endpoint {changed.id}: {_summary(changed)}")


@webhooks_cli.command("delete")
def delete(endpoint_id: EndpointId) -> None:
    """Remove an endpoint with its deliveries and their attempts."""

    async def work(database: db.Database, _settings: Settings) -> uuid.UUID:
        async with database.write() as session:
            found = await _existing(session, _endpoint_id(endpoint_id))
            await endpoints.remove(session, found.id)
            return found.id

    out.print(f"deleted webhook endpoint {_run(work)}")


@webhooks_cli.command("rotate-secret")
def rotate_secret(endpoint_id: EndpointId, as_json: AsJson = False) -> None:
    """A new signing secret, printed once on the last line; the old one signs for a grace.

    The grace is TRACKER_WEBHOOK_SECRET_GRACE_SECONDS (a day by default).
    """

    async def work(database: db.Database, settings: Settings) -> endpoints.Endpoint:
        now = clock.utcnow()
        until = now + dt.timedelta(seconds=settings.webhook_secret_grace_seconds)
        async with database.write() as session:
            current = await endpoints.get(session, _endpoint_id(endpoint_id), for_update=True)
            if current is None:
                raise errors.NotFound(f"no webhook endpoint {endpoint_id}")
            return await endpoints.rotate_secret(session, current, signing.new_secret(), until, now)

    rotated = _run(work)
    if as_json:
        _print_json(schemas.with_secret(rotated))
        return
    until = rotated.previous_secret_until
    err.print(
        f"rotated the secret of webhook endpoint {rotated.id}; the previous one signs too "
        f"until {until.isoformat(timespec='seconds') if until else '-'}. The new secret:"
    )
    typer.echo(rotated.secret)


@webhooks_cli.command("deliveries")
def deliveries(
    endpoint_id: EndpointId,
    status: Annotated[str | None, typer.Option(help="pending, succeeded or failed.")] = None,
    limit: Annotated[int, typer.Option(help="Deliveries per page, newest first.")] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_json: AsJson = False,
) -> None:
    """An endpoint's deliveries, newest first, with their attempts."""
    query = {"status": status, "limit": limit, "cursor": cursor}

    async def work(database: db.Database, _settings: Settings) -> recovery.Page:
        params = schemas.validated(
            schemas.DeliveriesParams, {k: v for k, v in query.items() if v is not None}
        )
        async with database.read() as session:
            found = await _existing(session, _endpoint_id(endpoint_id))
            return await recovery.deliveries(
                session, found.id, status=params.status, limit=params.limit, cursor=params.cursor
            )

    page = _run(work)
    if as_json:
        _print_json(schemas.page_out(page))
        return
    table = Table("id", "event", "status", "attempts", "last", "created", "next attempt")
    for delivery in page.deliveries:
        table.add_row(
            str(delivery.id),
            delivery.event_type,
            delivery.status,
            str(len(recovery.attempts_of(page, delivery))),
            _outcome(delivery.last_status_code, delivery.last_error),
            _when(delivery.created_at),
            _when(delivery.next_attempt_at),
        )
    views.show(out, table)  # plain in a pipe
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


def _outcome(status_code: int | None, error: str | None) -> str:
    if error:
        return error if status_code is None else f"HTTP {status_code}: {error}"
    return "-" if status_code is None else f"HTTP {status_code}"


@webhooks_cli.command("retry")
def retry(
    delivery_id: Annotated[int, typer.Argument(help="The delivery's id (see deliveries).")],
) -> None:
    """Send a failed (or succeeded) delivery again, its retry schedule restarted."""

    async def work(database: db.Database, _settings: Settings) -> models.WebhookDelivery:
        async with database.write() as session:
            return await recovery.retry(session, delivery_id, clock.utcnow())

    retried = _run(work)
    out.print(f"delivery {retried.id} ({retried.event_type}) is pending again")


@webhooks_cli.command("recover")
def recover(
    endpoint_id: EndpointId,
    since: Annotated[
        str, typer.Option(help="ISO 8601 with an offset: failed deliveries created since then.")
    ],
) -> None:
    """Send again every failed delivery of an endpoint created since --since."""

    async def work(database: db.Database, _settings: Settings) -> int:
        when = schemas.validated(schemas.RecoverParams, {"since": since}).since
        async with database.write() as session:
            found = await _existing(session, _endpoint_id(endpoint_id))
            return await recovery.recover(session, found, when, clock.utcnow())

    out.print(f"recovered {_run(work)} failed deliveries")


@webhooks_cli.command("test")
def send_test(
    endpoint_id: EndpointId,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the first attempt; 0 to not wait.")
    ] = 10.0,
) -> None:
    """Queue a webhook.test event and wait for a running serve or worker to attempt it."""

    async def work(database: db.Database, _settings: Settings) -> models.WebhookDelivery | None:
        async with database.write() as session:
            found = await _existing(session, _endpoint_id(endpoint_id))
            queued = await recovery.queue_test(session, found, clock.utcnow())
        out.print(f"queued webhook.test delivery {queued.id} ({queued.event_id})")
        return await _first_attempt(database, queued.id, wait)

    attempted = _run(work)
    if attempted is None:
        if wait > 0:
            err.print(f"no attempt within {wait:g} s: is `tracker serve` or `worker` running?")
            raise typer.Exit(1)
        return
    outcome = _outcome(attempted.last_status_code, attempted.last_error)
    out.print(f"{attempted.status}: {outcome}")
    if attempted.status != recovery.SUCCEEDED:
        raise typer.Exit(1)


async def _first_attempt(
    database: db.Database, delivery_id: int, wait: float
) -> models.WebhookDelivery | None:
    """The delivery once an attempt is recorded on it, or None after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        async with database.read() as session:
            found = await recovery.delivery_status(session, delivery_id)
        if found is None:
            raise errors.NotFound(f"webhook delivery {delivery_id} is gone (endpoint deleted?)")
        if found.last_attempt_at is not None or found.status != recovery.PENDING:
            return found
        await asyncio.sleep(POLL_SECONDS)
    return None
