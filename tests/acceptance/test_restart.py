"""Restarts lose nothing (issue 12, item 7): a held socket, a graceful SIGTERM, exit 0."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import func, select

from tests.conftest import SettingsFactory
from tests.factories import add_message, fetch_message
from tests.processes import free_port, started, stop
from tracker import db, models
from tracker.domain import status
from tracker.reports import capability
from tracker.sandbox import SandboxConfig
from tracker.sandbox.server import running_sandbox

REPORTS = 300
LOAD_THREADS = 8
CALLBACK_TIMEOUT_SECONDS = 30.0  # covers a restart: the request waits in the backlog
HANG_NUMBER = "254700000504"  # the sandbox accepts it, then holds the answer `hang_seconds`


@contextmanager
def held_socket() -> Iterator[socket.socket]:
    """What systemd does for tracker.socket: bind, listen, keep it across restarts."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        yield sock
    finally:
        sock.close()


def report_body(provider_id: str) -> bytes:
    return json.dumps(
        {"message_id": provider_id, "contact": "254712345678", "status": "Delivered"}
    ).encode()


def post_report(client: httpx.Client, url: str, provider_id: str) -> str:
    """One callback; its outcome (the client opens a connection per request, as KIMISMS does)."""
    try:
        response = client.post(url, content=report_body(provider_id))
    except httpx.ConnectError:
        return "refused"
    except httpx.TransportError as exc:
        return type(exc).__name__
    return str(response.status_code)


def one_connection_per_request() -> httpx.Client:
    limits = httpx.Limits(max_keepalive_connections=0)
    return httpx.Client(limits=limits, timeout=CALLBACK_TIMEOUT_SECONDS)


async def count_delivered(database: db.Database, ids: list[uuid.UUID]) -> int:
    async with database.read() as session:
        query = select(func.count()).where(
            models.Message.id.in_(ids), models.Message.status == status.Status.DELIVERED.value
        )
        return int(await session.scalar(query) or 0)


async def count_receipts(database: db.Database) -> int:
    async with database.read() as session:
        return int(
            await session.scalar(select(func.count()).select_from(models.CallbackReceipt)) or 0
        )


def restart_under_load(urls: list[str], env: dict[str, str], sock: socket.socket) -> Counter[str]:
    """Post every report from a pool while `serve --fd` is stopped and started again."""
    args = ("serve", "--no-dispatcher", "--fd", str(sock.fileno()))
    fds = (sock.fileno(),)
    ready = f"{env['TRACKER_PUBLIC_URL']}/healthz"
    sent = Counter[str]()
    third = threading.Event()
    lock = threading.Lock()

    def send(index: int) -> None:
        outcome = post_report(client, urls[index], f"prov-{index}")
        with lock:
            sent[outcome] += 1
            if sum(sent.values()) >= len(urls) // 3:
                third.set()

    with (
        one_connection_per_request() as client,
        started(*args, env=env, ready_url=ready, pass_fds=fds) as first,
    ):
        with ThreadPoolExecutor(LOAD_THREADS) as pool:
            futures = [pool.submit(send, i) for i in range(len(urls))]
            assert third.wait(60)
            assert stop(first.process, signal.SIGTERM, 20) == 0, first.output()[-2000:]
            with started(*args, env=env, pass_fds=fds) as second:
                for future in futures:
                    future.result()
        assert second.process.returncode == 0, second.output()[-2000:]
    return sent


def wait_for_a_send(sandbox_url: str) -> None:
    deadline = time.monotonic() + 30
    while not httpx.get(f"{sandbox_url}/sandbox/messages").json():
        assert time.monotonic() < deadline, "the send never reached the sandbox"
        time.sleep(0.05)


async def test_item_7_a_restart_on_a_held_socket_refuses_nothing_and_loses_no_report(
    make_settings: SettingsFactory, database_url: str, database: db.Database, tmp_path: Path
) -> None:
    """`serve --fd N` is SIGTERMed and started again under callback load: 0 refused, all applied."""
    ids = [await add_message(database, provider_message_id=f"prov-{i}") for i in range(REPORTS)]
    with held_socket() as sock:
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        env = {
            "TRACKER_DATABASE_URL": database_url,
            "TRACKER_DATA_DIR": str(tmp_path / "data"),
            "TRACKER_PUBLIC_URL": base,
            "TRACKER_LOG_FORMAT": "json",
        }
        keys = make_settings(database_url=database_url, public_url=base).callback_keys()
        urls = [capability.callback_url(base, keys, message_id) for message_id in ids]
        sent = await asyncio.to_thread(restart_under_load, urls, env, sock)
    assert sent == Counter({"200": REPORTS}), sent
    assert await count_delivered(database, ids) == REPORTS
    assert await count_receipts(database) == REPORTS


async def test_item_7_sigterm_finishes_the_send_in_flight_while_callbacks_are_answered(
    make_settings: SettingsFactory, database_url: str, database: db.Database, tmp_path: Path
) -> None:
    """SIGTERM during a slow send: a callback is still answered, the send is recorded, exit 0."""
    hanging = await add_message(database, status=status.Status.QUEUED, contact=HANG_NUMBER)
    reported = await add_message(database, provider_message_id="prov-drain")
    config = SandboxConfig(
        client_id="drain",
        client_secret="drain-secret",
        callback_delay_seconds=60,
        rate_limit_per_minute=6000,
        hang_seconds=3.0,
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running_sandbox(config) as sandbox_url:
        env = {
            "TRACKER_DATABASE_URL": database_url,
            "TRACKER_DATA_DIR": str(tmp_path / "data"),
            "TRACKER_PUBLIC_URL": base,
            "TRACKER_KIMISMS_BASE_URL": sandbox_url,
            "TRACKER_KIMISMS_CLIENT_ID": "drain",
            "TRACKER_KIMISMS_CLIENT_SECRET": "drain-secret",
            "TRACKER_RATE_LIMIT_PER_MINUTE": "6000",
            "TRACKER_LOG_FORMAT": "json",
        }
        keys = make_settings(database_url=database_url, public_url=base).callback_keys()
        with started("serve", "--port", str(port), env=env, ready_url=f"{base}/healthz") as server:
            await asyncio.to_thread(wait_for_a_send, sandbox_url)
            server.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)  # the dispatcher is draining; the listener must be open
            url = capability.callback_url(base, keys, reported)
            with one_connection_per_request() as client:
                outcome = await asyncio.to_thread(post_report, client, url, "prov-drain")
            code = await asyncio.to_thread(server.process.wait, 20)
    assert outcome == "200"
    assert code == 0, server.output()[-2000:]
    row = await fetch_message(database, hanging)
    assert row.status == status.Status.PENDING.value
    assert row.accepted_at is not None
    assert (await fetch_message(database, reported)).status == status.Status.DELIVERED.value
    assert '"dispatcher_stopped"' in server.output()
