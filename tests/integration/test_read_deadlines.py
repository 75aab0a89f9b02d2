"""Slow clients are cut off (issue 12, item 8): header and body read deadlines.

The tracker app runs under ``tracker.server``'s uvicorn setup in a thread, on a
real socket, with short deadlines so the test waits seconds, not the defaults.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from starlette.types import Receive, Scope, Send

from tests.factories import add_message, fetch_message
from tracker import db, server
from tracker.app import create_app, stop_sending
from tracker.domain import status
from tracker.reports import capability
from tracker.settings import Settings

HEADER_SECONDS = 1.0
BODY_SECONDS = 1.0
CLOSED_WITHIN_SECONDS = 8.0  # generous: the machine is shared
SLOW_CLIENTS = 200


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The tracker on a free loopback port, served as `tracker serve` serves it."""
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    protocol = server.with_deadlines(HEADER_SECONDS, BODY_SECONDS)
    config = server.config(app, host="127.0.0.1", port=0, protocol=protocol)
    runner = server.GracefulServer(config, lambda: stop_sending(app))
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not runner.started:
            assert thread.is_alive(), "the server stopped during start-up"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        runner.should_exit = True
        thread.join(15)
        sock.close()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes the connection (EOF or reset) within the bound."""
    try:
        async with asyncio.timeout(CLOSED_WITHIN_SECONDS):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def dribble_headers(port: int, stop: asyncio.Event) -> bool:
    """A slowloris client: a request line, then one header line every 0.2 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: tracker\r\n")

    async def drip() -> None:
        with_errors = (ConnectionError, RuntimeError)
        while not stop.is_set():
            await asyncio.sleep(0.2)
            try:
                writer.write(b"X-Slow: yes\r\n")
                await writer.drain()
            except with_errors:
                return

    dripping = asyncio.create_task(drip())
    try:
        return await closed_by_server(reader)
    finally:
        dripping.cancel()
        writer.close()


async def test_item_8_slow_header_clients_are_cut_off_and_callbacks_still_answered(
    settings: Settings, database: db.Database
) -> None:
    """200 clients dribbling headers are closed within the deadline; a callback meanwhile is 200."""
    message_id = await add_message(database, provider_message_id="prov-slow")
    with serving(settings) as base:
        port = int(base.rsplit(":", 1)[1])
        stop = asyncio.Event()
        slow = [asyncio.create_task(dribble_headers(port, stop)) for _ in range(SLOW_CLIENTS)]
        await asyncio.sleep(0.5)
        url = capability.callback_url(base, settings.callback_keys(), message_id)
        body = {"message_id": "prov-slow", "contact": "254712345678", "status": "Delivered"}
        async with httpx.AsyncClient() as client:
            answer = await client.post(url, json=body, timeout=5)
        closed = await asyncio.gather(*slow)
        stop.set()
    assert answer.status_code == 200
    assert (await fetch_message(database, message_id)).status == status.Status.DELIVERED.value
    assert all(closed), f"{closed.count(False)} slow connections were still open"


async def test_item_8_a_silent_connection_and_a_stalled_body_are_closed(
    settings: Settings, database: db.Database
) -> None:
    """A connection that sends nothing, and a callback body that stops halfway, are closed."""
    message_id = await add_message(database, provider_message_id="prov-stalled")
    with serving(settings) as base:
        port = int(base.rsplit(":", 1)[1])
        path = capability.callback_url(base, settings.callback_keys(), message_id)
        path = path.removeprefix(base)
        silent, silent_writer = await asyncio.open_connection("127.0.0.1", port)
        stalled, writer = await asyncio.open_connection("127.0.0.1", port)
        request = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{{"
        writer.write(request.encode())
        results = await asyncio.gather(closed_by_server(silent), closed_by_server(stalled))
        for opened in (silent_writer, writer):
            opened.close()
    assert all(results)
    assert (await fetch_message(database, message_id)).status == status.Status.PENDING.value


async def test_item_8_oversized_headers_are_refused(settings: Settings) -> None:
    """More than MAX_HEADER_BYTES of headers gets a 400 and the connection closed."""
    with serving(settings) as base:
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        line = b"X-Big: " + b"a" * 1000 + b"\r\n"
        for _ in range(server.MAX_HEADER_BYTES // len(line) + 2):
            writer.write(line)
        answer = await asyncio.wait_for(reader.read(4096), CLOSED_WITHIN_SECONDS)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400")


def test_item_8_serve_sets_a_keep_alive_timeout_and_the_deadline_protocol() -> None:
    """The uvicorn config `serve` uses: idle kept-alive connections close, deadlines apply."""
    config = server.config(app_stub, host="127.0.0.1", port=0)
    assert config.timeout_keep_alive == server.KEEP_ALIVE_SECONDS
    assert isinstance(config.http, type)
    assert issubclass(config.http, server.DeadlineProtocol)
    assert isinstance(config, uvicorn.Config)


async def app_stub(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI app that is never called (the config is only inspected)."""
