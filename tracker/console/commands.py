"""Operator commands over the HTTP API: send, messages list/show, stats, watch.

They talk to a running tracker (``--url`` / ``TRACKER_URL``) with an API key
(``--key`` / ``TRACKER_API_KEY``), never to the database, so they work from any
machine that can reach the service. Rich tables for people, ``--json`` for
scripts (tables are plain text in a pipe). A failure is one line on stderr and exit
status 2.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.progress import Progress
from rich.text import Text

from tracker.console import bulk, views
from tracker.domain import headers, status

Status = status.Status  # fields and options named ``status`` shadow the module

DEFAULT_URL = "http://127.0.0.1:8000"
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"([0-9]{1,9})([smhd]?)")
TIMEOUT_SECONDS = 30.0
EXIT_FAILED = 2
EXIT_SOME_REFUSED = 1

Url = Annotated[str, typer.Option("--url", envvar="TRACKER_URL", help="The tracker's base URL.")]
Key = Annotated[
    str,
    typer.Option(
        "--key", envvar="TRACKER_API_KEY", help="An API key (kt_...).", show_default=False
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead.")]

messages_cli = typer.Typer(help="Query messages.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


class ApiError(Exception):
    """One line saying what went wrong."""


class Api:
    """A small synchronous client for the tracker's API."""

    def __init__(self, url: str, key: str) -> None:
        if not key:
            raise ApiError("no API key: pass --key or set TRACKER_API_KEY")
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url, timeout=TIMEOUT_SECONDS, headers={"Authorization": f"Bearer {key}"}
        )

    def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        try:
            return self.http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise ApiError(f"cannot reach the tracker at {self.url}: {reason}") from None

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        """For ``bulk``: transport errors are left to its retries."""
        return self.http.post(path, json=body, headers=headers)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON of a 2xx answer; ApiError naming the problem otherwise."""
        response = self.request(method, path, **kwargs)
        if response.status_code >= HTTPStatus.BAD_REQUEST:
            message = bulk.explain(response)
            if response.status_code == HTTPStatus.UNAUTHORIZED:
                message += " (check --key or TRACKER_API_KEY)"
            raise ApiError(message)
        return response.json()


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Any failure: one line on stderr, exit status 2, no traceback."""
    try:
        yield
    except (ApiError, bulk.BulkError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    except httpx.HTTPError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


StatusFilter = Annotated[
    list[Status] | None,
    typer.Option(metavar="STATUS", help=f"One of {', '.join(Status)}; repeat for several."),
]
Priority = Annotated[
    status.Priority,
    typer.Option(help="high jumps the queue (OTPs); low waits for the rest."),
]
ChunkSize = Annotated[
    int, typer.Option(min=1, max=10_000, help="Rows per batch request (with --csv).")
]
ValidFor = Annotated[
    str | None,
    typer.Option(help="Not sent after this long (from --send-at or now): 90s, 15m, 24h, 7d."),
]
SendAt = Annotated[
    str | None, typer.Option(help="Not sent before this time: ISO 8601 with offset.")
]
Metadata = Annotated[
    str | None, typer.Option(help="A JSON object kept with the message: '{\"order\": 42}'.")
]
IdempotencyKey = Annotated[
    str | None,
    typer.Option(
        help="Run the same command with the same key again and nothing is queued twice "
        "(default: a new key each run)."
    ),
]


def send(
    *,
    message: Annotated[
        str, typer.Option(help="The text; with --csv a template with {column} placeholders.")
    ],
    url: Url = DEFAULT_URL,
    key: Key = "",
    to: Annotated[str | None, typer.Option(help="The recipient (any Kenyan form).")] = None,
    csv_file: Annotated[
        Path | None,
        typer.Option("--csv", help="One message per row; needs a 'to' column (, ; tab or |)."),
    ] = None,
    sender_name: Annotated[str | None, typer.Option(help="An allowed sender id.")] = None,
    priority: Priority = status.Priority.NORMAL,
    reference: Annotated[str | None, typer.Option(help="Your own id (one message).")] = None,
    valid_for: ValidFor = None,
    send_at: SendAt = None,
    metadata: Metadata = None,
    idempotency_key: IdempotencyKey = None,
    chunk_size: ChunkSize = bulk.DEFAULT_CHUNK_SIZE,
    as_json: AsJson = False,
) -> None:
    """Queue one message (--to) or one per CSV row (--csv), through the API."""
    with reported():
        if (to is None) == (csv_file is None):
            raise ApiError("give exactly one of --to and --csv")
        extra = _extra(sender_name, priority, valid_for, send_at, metadata)
        api = Api(url, key)
        run_key = idempotency_key or str(uuid.uuid4())  # a new run is a new send
        if to is not None:
            body = {"to": to, "message": message, "reference": reference, **extra}
            _send_one(api, body, run_key, as_json)
            return
        assert csv_file is not None  # noqa: S101 - checked above
        outcome = _send_csv(api, csv_file, message, extra, chunk_size, run_key=run_key)
    views.print_bulk_outcome(out, outcome, as_json)
    if outcome.refused:
        raise typer.Exit(EXIT_SOME_REFUSED)


def _extra(
    sender_name: str | None,
    priority: status.Priority,
    valid_for: str | None,
    send_at: str | None,
    metadata: str | None,
) -> dict[str, Any]:
    """The fields every message of this command shares."""
    extra: dict[str, Any] = {"priority": priority.value, "sender_name": sender_name or None}
    extra["send_at"] = send_at
    extra["valid_for"] = None if valid_for is None else duration_seconds(valid_for, "--valid-for")
    if metadata is not None:
        try:
            extra["metadata"] = json.loads(metadata)
        except ValueError:
            extra["metadata"] = None
        if not isinstance(extra["metadata"], dict):
            raise ApiError("--metadata must be a JSON object, e.g. '{\"order\": 42}'")
    return {name: value for name, value in extra.items() if value is not None}


def duration_seconds(text: str, option: str) -> int:
    """``90s``, ``15m``, ``24h``, ``7d`` or plain seconds (the API's valid_for is seconds).

    The service parses its stats window itself (``ops.queries``); ``console`` imports
    nothing of the service, so this small reading is its own.
    """
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None or int(found[1]) == 0:
        raise ApiError(f"{option} must be like 90s, 15m, 24h, 7d or a number of seconds")
    return int(found[1]) * DURATION_UNITS[found[2] or "s"]


def _send_one(api: Api, body: dict[str, Any], run_key: str, as_json: bool) -> None:
    body = {k: v for k, v in body.items() if v is not None}
    sent = api.json("POST", "/v1/messages", json=body, headers={headers.IDEMPOTENCY_KEY: run_key})
    if as_json:
        print_json(sent)
        return
    parts = "part" if sent["segments"] == 1 else "parts"
    typer.echo(
        f"queued {sent['id']} to {sent['to']} ({sent['segments']} {parts}, {sent['encoding']})"
    )


def _send_csv(
    api: Api, path: Path, template: str, extra: dict[str, Any], chunk_size: int, *, run_key: str
) -> bulk.Outcome:
    rows, unfilled = bulk.read_rows(path, template)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(f"sending {path.name}", total=len(rows))
        try:
            outcome = bulk.send_rows(
                api.post,
                rows,
                extra,
                chunk_size,
                on_chunk=lambda n: progress.advance(task, n),
                run_id=run_key,
            )
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach the tracker at {api.url}: {exc}") from None
    outcome.refused = sorted([*unfilled, *outcome.refused], key=lambda refused: refused.line)
    return outcome


# Over 40 lines: typer reads one annotated parameter per filter; the body is short.
@messages_cli.command("list")
def list_messages(
    *,
    url: Url = DEFAULT_URL,
    key: Key = "",
    status: Annotated[
        list[Status] | None,
        typer.Option(metavar="STATUS", help=f"One of {', '.join(Status)}; repeat for several."),
    ] = None,
    to: Annotated[str | None, typer.Option(help="Sent to this number (any Kenyan form).")] = None,
    reference: Annotated[str | None, typer.Option(help="Sent with this reference.")] = None,
    sender_name: Annotated[str | None, typer.Option(help="Sent under this sender id.")] = None,
    client: Annotated[str | None, typer.Option(help="Another client's (admin keys).")] = None,
    provider_message_id: Annotated[
        str | None, typer.Option(help="KIMISMS's id of the message.")
    ] = None,
    created_after: Annotated[str | None, typer.Option(help="ISO 8601, with offset.")] = None,
    created_before: Annotated[str | None, typer.Option(help="ISO 8601, with offset.")] = None,
    overdue: Annotated[
        bool | None,
        typer.Option("--overdue/--not-overdue", help="Only pending ones past their report due."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Messages on the page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of a previous page.")] = None,
    as_json: AsJson = False,
) -> None:
    """List messages, newest first, with filters."""
    params: dict[str, Any] = {
        "status": [s.value for s in status or []],
        "to": to,
        "reference": reference,
        "sender_name": sender_name,
        "client": client,
        "provider_message_id": provider_message_id,
        "created_after": created_after,
        "created_before": created_before,
        "overdue": None if overdue is None else str(overdue).lower(),
        "limit": limit,
        "cursor": cursor,
    }
    with reported():
        page = Api(url, key).json("GET", "/v1/messages", params=_present(params))
    _show_page(page, as_json)


def _show_page(page: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(page)
        return
    views.show(out, views.messages_table(page["messages"], wide=views.is_wide(out)))
    if page["next_cursor"]:  # one line whatever the width, so it can be copied
        out.out(f"more: --cursor {page['next_cursor']}", highlight=False)


def _present(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None and v != []}


@messages_cli.command("show")
def show_message(
    message_id: Annotated[str, typer.Argument(metavar="ID", help="The message id.")],
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """One message and its timeline: who said what, when."""
    with reported():
        try:
            uuid.UUID(message_id)
        except ValueError:
            raise ApiError(
                f"{message_id!r} is not a message id (a UUID, as `tracker messages list` shows)"
            ) from None
        found = Api(url, key).json("GET", f"/v1/messages/{message_id}")
    if as_json:
        print_json(found)
        return
    views.show(out, views.message_table(found), views.timeline_table(found["events"]))


def stats(
    url: Url = DEFAULT_URL,
    key: Key = "",
    window: Annotated[str, typer.Option(help="15m, 24h, 7d or seconds.")] = "24h",
    client: Annotated[str | None, typer.Option(help="One client's (admin keys).")] = None,
    as_json: AsJson = False,
) -> None:
    """Counts, delivery rate, units, queue and delivery times over a window."""
    with reported():
        found = Api(url, key).json(
            "GET", "/v1/stats", params=_present({"window": window, "client": client})
        )
    if as_json:
        print_json(found)
        return
    views.show(out, views.stats_table(found))


def watch(
    url: Url = DEFAULT_URL,
    key: Key = "",
    limit: Annotated[int, typer.Option(min=1, max=500, help="Rows shown.")] = 20,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print one table and stop.")] = False,
) -> None:
    """A live table of the latest messages and their statuses (Ctrl-C stops).

    The first refresh must succeed; later ones that fail (a restart, a blip)
    show the error in place of the table and are tried again.
    """
    with reported():
        api = Api(url, key)
        view = _snapshot(api, limit)
        if once:
            views.show(out, view)
            return
    with contextlib.suppress(KeyboardInterrupt), Live(view, console=out) as live:
        while True:
            time.sleep(interval)
            try:
                live.update(_snapshot(api, limit))
            except ApiError as exc:
                live.update(Text(f"error: {exc} (retrying every {interval:g} s)", style="red"))


def _snapshot(api: Api, limit: int) -> Any:
    page = api.json("GET", "/v1/messages", params={"limit": limit})
    summary = api.json("GET", "/v1/stats", params={"window": "15m"})
    return views.watch_view(page["messages"], summary, wide=views.is_wide(out))


def register(cli: typer.Typer) -> None:
    """Add the ops commands to the ``tracker`` command."""
    cli.command("send")(send)
    cli.add_typer(messages_cli, name="messages")
    cli.command("stats")(stats)
    cli.command("watch")(watch)
