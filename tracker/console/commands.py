"""Operator commands over the HTTP API: send, messages list/show, stats, watch.

They talk to a running tracker (``--url`` / ``TRACKER_URL``) with an API key
(``--key`` / ``TRACKER_API_KEY``), never to the database, so they work from any
machine that can reach the service. Rich tables for people, ``--json`` for
scripts. A failure is one line on stderr and exit status 2.
"""

from __future__ import annotations

import contextlib
import json
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


def send(
    *,
    message: Annotated[
        str, typer.Option(help="The text; with --csv a template with {column} placeholders.")
    ],
    url: Url = DEFAULT_URL,
    key: Key = "",
    to: Annotated[str | None, typer.Option(help="The recipient (any Kenyan form).")] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="One message per row; needs a 'to' column.")
    ] = None,
    sender_name: Annotated[str | None, typer.Option(help="An allowed sender id.")] = None,
    priority: Annotated[status.Priority, typer.Option()] = status.Priority.NORMAL,
    reference: Annotated[str | None, typer.Option(help="Your own id (one message).")] = None,
    chunk_size: Annotated[int, typer.Option(min=1, max=10_000)] = bulk.DEFAULT_CHUNK_SIZE,
    as_json: AsJson = False,
) -> None:
    """Queue one message (--to) or one per CSV row (--csv), through the API."""
    extra: dict[str, Any] = {"priority": priority.value}
    if sender_name:
        extra["sender_name"] = sender_name
    with reported():
        if (to is None) == (csv_file is None):
            raise ApiError("give exactly one of --to and --csv")
        api = Api(url, key)
        if to is not None:
            _send_one(api, {"to": to, "message": message, "reference": reference, **extra}, as_json)
            return
        assert csv_file is not None  # noqa: S101 - checked above
        outcome = _send_csv(api, csv_file, message, extra, chunk_size)
    views.print_bulk_outcome(out, outcome, as_json)
    if outcome.refused:
        raise typer.Exit(EXIT_SOME_REFUSED)


def _send_one(api: Api, body: dict[str, Any], as_json: bool) -> None:
    body = {k: v for k, v in body.items() if v is not None}
    key = {headers.IDEMPOTENCY_KEY: str(uuid.uuid4())}  # a retry of this command is a new send
    sent = api.json("POST", "/v1/messages", json=body, headers=key)
    if as_json:
        print_json(sent)
        return
    parts = "part" if sent["segments"] == 1 else "parts"
    typer.echo(
        f"queued {sent['id']} to {sent['to']} ({sent['segments']} {parts}, {sent['encoding']})"
    )


def _send_csv(
    api: Api, path: Path, template: str, extra: dict[str, Any], chunk_size: int
) -> bulk.Outcome:
    rows = bulk.read_rows(path, template)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(f"sending {path.name}", total=len(rows))
        try:
            return bulk.send_rows(
                api.post,
                rows,
                extra,
                chunk_size,
                on_chunk=lambda n: progress.advance(task, n),
            )
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach the tracker at {api.url}: {exc}") from None


@messages_cli.command("list")
def list_messages(
    *,
    url: Url = DEFAULT_URL,
    key: Key = "",
    status: Annotated[list[Status] | None, typer.Option(help="Repeat for several.")] = None,
    to: Annotated[str | None, typer.Option()] = None,
    reference: Annotated[str | None, typer.Option()] = None,
    sender_name: Annotated[str | None, typer.Option()] = None,
    client: Annotated[str | None, typer.Option(help="Another client's (admin keys).")] = None,
    provider_message_id: Annotated[str | None, typer.Option()] = None,
    created_after: Annotated[str | None, typer.Option(help="ISO 8601, with offset.")] = None,
    created_before: Annotated[str | None, typer.Option(help="ISO 8601, with offset.")] = None,
    overdue: Annotated[bool | None, typer.Option("--overdue/--not-overdue")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
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
    out.print(views.messages_table(page["messages"]))
    if page["next_cursor"]:
        out.print(f"more: --cursor {page['next_cursor']}", highlight=False)


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
        found = Api(url, key).json("GET", f"/v1/messages/{message_id}")
    if as_json:
        print_json(found)
        return
    out.print(views.message_table(found))
    out.print(views.timeline_table(found["events"]))


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
    out.print(views.stats_table(found))


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
            out.print(view)
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
    return views.watch_view(page["messages"], summary)


def register(cli: typer.Typer) -> None:
    """Add the ops commands to the ``tracker`` command."""
    cli.command("send")(send)
    cli.add_typer(messages_cli, name="messages")
    cli.command("stats")(stats)
    cli.command("watch")(watch)
