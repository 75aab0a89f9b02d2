"""``tracker demo``: the whole loop on this machine, in one command.

Starts the sandbox and the tracker (with its dispatcher) on a temporary SQLite
database, creates a key, sends a handful of messages through the real HTTP
API, shows their statuses change live until every one is final, then prints how
to query them. Everything it started is stopped and removed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from tracker import auth, db, migrate
from tracker.app import create_app
from tracker.domain import status
from tracker.sandbox import SandboxConfig, running_sandbox
from tracker.sandbox.server import running_app
from tracker.settings import Settings

FAILING_NUMBER = "254700000510"  # the sandbox reports "Failed" for it
FINAL = {status.value for status in status.FINAL}
CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-secret"
DEMO_SENDER = "KIMISMS"  # the one sender both sides know, whatever the shell sets
WIDE_COLUMNS = 100  # room for the provider's status beside full ids


@dataclass
class Sent:
    label: str
    id: str


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _running_loop(workdir: Path, port: int) -> Iterator[Settings]:
    config = SandboxConfig(
        sender_names=(DEMO_SENDER,),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        callback_delay_seconds=2.0,
        failure_ratio=0.0,
    )
    with running_sandbox(config) as sandbox_url:
        settings = Settings.load(  # its own database, whatever TRACKER_* the shell has
            data_dir=workdir,
            database_url=f"sqlite:///{workdir / 'demo.db'}",
            sender_names=(DEMO_SENDER,),
            kimisms_base_url=sandbox_url,
            kimisms_client_id=CLIENT_ID,
            kimisms_client_secret=CLIENT_SECRET,
            public_url=f"http://127.0.0.1:{port}",
            log_level="WARNING",
        )
        migrate.upgrade(settings.async_database_url)
        with running_app(create_app(settings, run_dispatcher=True), port=port):
            yield settings


async def _create_key(settings: Settings) -> str:
    database = db.Database(settings.async_database_url)
    try:
        return await auth.create_key(database, "demo", frozenset(auth.Scope))
    finally:
        await database.dispose()


def _send_all(http: httpx.Client, console: Console) -> list[Sent]:
    sent: list[Sent] = []
    otp = {"to": "0712 345 678", "message": "Your code is 482913", "priority": "high"}
    response = http.post("/v1/messages", json=otp)
    sent.append(Sent("OTP (high)", response.json()["id"]))
    batch = {
        "messages": [{"to": f"07220000{n:02d}", "message": f"Order {n} shipped"} for n in range(3)]
    }
    response = http.post("/v1/messages/batch", json=batch)
    sent += [Sent(f"batch {n + 1}", m["id"]) for n, m in enumerate(response.json()["messages"])]
    response = http.post("/v1/messages", json={"to": FAILING_NUMBER, "message": "Will fail"})
    sent.append(Sent("fails", response.json()["id"]))  # the sandbox fails it
    invalid = http.post("/v1/messages", json={"to": "020 123 4567", "message": "Landline"})
    console.print(
        f"[bold]invalid number[/]: HTTP {invalid.status_code} {invalid.json()['errors']}",
        highlight=False,
    )
    return sent


def _table(rows: list[tuple[Sent, dict[str, Any]]], *, wide: bool) -> Table:
    """Full ids (``tracker messages show`` takes them); provider status when there is room."""
    table = Table(
        "message", title="kimisms-tracker demo", box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD
    )
    table.add_column("id", no_wrap=True, min_width=36)
    table.add_column("to", no_wrap=True)
    table.add_column("status")
    if wide:
        table.add_column("provider status")
    for sent, body in rows:
        status = body.get("status", "?")
        style = {"delivered": "green", "failed": "red"}.get(status, "yellow")
        row = [sent.label, sent.id, str(body.get("to", "")), f"[{style}]{status}[/]"]
        table.add_row(*row, *([str(body.get("provider_status") or "")] if wide else []))
    return table


def _watch(http: httpx.Client, sent: list[Sent], console: Console, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    try:
        with Live(console=console, refresh_per_second=4) as live:
            while True:
                rows = [(s, http.get(f"/v1/messages/{s.id}").json()) for s in sent]
                live.update(_table(rows, wide=console.width >= WIDE_COLUMNS))
                if all(body.get("status") in FINAL for _, body in rows):
                    return True
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.5)
    finally:
        if not console.is_terminal:  # Live leaves its last frame without a newline there
            console.line()


def command() -> str:
    """How this shell runs the tracker: ``tracker`` on PATH, ``.venv/bin/tracker``, or python -m."""
    program = Path(sys.argv[0])
    if program.name != "tracker":  # python -m tracker
        return f"{shlex.quote(sys.executable)} -m tracker"
    on_path = shutil.which("tracker")
    if on_path and Path(on_path).resolve() == program.resolve():
        return "tracker"
    with contextlib.suppress(ValueError):
        return str(program.resolve().relative_to(Path.cwd().resolve()))
    return str(program)


def hints(tracker: str) -> str:
    """What to type next, one command a line (printed unwrapped: they are copied)."""
    api = "localhost:8000/v1"
    return (
        "\nStart your own service (it keeps this terminal; use a second one for the rest):\n"
        f"  {tracker} serve --sandbox\n"
        "Then create a key and call the API:\n"
        f"  KEY=$({tracker} keys create --name me --scopes send,read)\n"
        f'  curl -s -H "Authorization: Bearer $KEY" {api}/messages/ID\n'
        f'  curl -s -H "Authorization: Bearer $KEY" {api}/stats\n'
        f"  TRACKER_API_KEY=$KEY {tracker} messages list --status delivered\n"
        f"  TRACKER_API_KEY=$KEY {tracker} stats"
    )


def run(timeout: float = 90.0, console: Console | None = None) -> bool:
    """Run the demo; True when every message reached a final status in time."""
    console = console or Console()
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="tracker-demo-") as workdir:
        with _running_loop(Path(workdir), port) as settings:
            key = asyncio.run(_create_key(settings))
            base = f"http://127.0.0.1:{port}"
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=base, headers=headers, timeout=10) as http:
                sent = _send_all(http, console)
                done = _watch(http, sent, console, timeout)
        console.print("all messages final" if done else "[red]timed out before all were final[/]")
        console.out(hints(command()), highlight=False)
    return done
