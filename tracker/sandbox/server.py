"""Run the sandbox over real HTTP: in the foreground, or in a thread for tests.

The tracker must meet the sandbox through real sockets (timeouts, connection
reuse, early callbacks racing answers), so tests and benchmarks start it with
``running_sandbox``: a uvicorn server on a socket bound *before* the thread
starts (so the port is known and free), waited for until it serves, and always
stopped on exit. A hanging answer (a fault) is cut short at shutdown after
``GRACEFUL_SHUTDOWN_SECONDS``, so a test never waits for ``hang_seconds``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from tracker.sandbox.app import create_sandbox_app
from tracker.sandbox.config import SandboxConfig
from tracker.sandbox.runtime import Clock

GRACEFUL_SHUTDOWN_SECONDS = 1
FOREGROUND_GRACEFUL_SHUTDOWN_SECONDS = 5
STARTUP_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0


async def serve(config: SandboxConfig, host: str = "127.0.0.1", port: int = 8090) -> None:
    """Serve the sandbox until interrupted (the ``tracker sandbox`` command)."""
    server_config = uvicorn.Config(
        create_sandbox_app(config),
        host=host,
        port=port,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=FOREGROUND_GRACEFUL_SHUTDOWN_SECONDS,
    )
    await uvicorn.Server(server_config).serve()


def _bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket; port 0 asks the OS for a free one."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _wait_until_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server stopped during start-up (see its log)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start within {STARTUP_TIMEOUT_SECONDS:g} s")
        time.sleep(0.01)


def _serve_in_thread(server: uvicorn.Server, sock: socket.socket) -> None:
    """uvicorn calls ``sys.exit`` when start-up fails; the waiter reports that instead."""
    try:
        server.run(sockets=[sock])
    except SystemExit:
        return


def _stop(server: uvicorn.Server, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(STOP_TIMEOUT_SECONDS)
    if thread.is_alive():
        server.force_exit = True
        thread.join(STOP_TIMEOUT_SECONDS)


@contextmanager
def running_app(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve any ASGI app in a background thread; yield its base URL."""
    sock = _bind(host, port)
    server_config = uvicorn.Config(
        app,
        access_log=False,
        log_config=None,  # leave the host process's logging alone
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = uvicorn.Server(server_config)
    thread = threading.Thread(
        target=_serve_in_thread, args=(server, sock), name="uvicorn-in-thread", daemon=True
    )
    try:
        thread.start()
        _wait_until_started(server, thread)
        yield _base_url(sock)
    finally:
        _stop(server, thread)
        sock.close()


@contextmanager
def running_sandbox(
    config: SandboxConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    clock: Clock = time.time,
) -> Iterator[str]:
    """The sandbox on a free port (by default) in a thread; yields ``http://host:port``."""
    with running_app(create_sandbox_app(config, clock=clock), host, port) as base_url:
        yield base_url
