"""How ``tracker serve`` runs uvicorn: restarts that lose nothing, slow clients cut off.

- An inherited listening socket (``--fd N``, systemd socket activation): while
  one process stops and the next starts, connections wait in the kernel's
  backlog of the socket the parent still holds, instead of being refused.
- SIGTERM (or Ctrl-C) first stops the dispatcher claiming and waits for its
  sends in flight while the callback route still answers; only then does
  uvicorn close the listener and finish the open requests. The process exits 0.
- Read deadlines: request headers must arrive within ``HEADER_TIMEOUT_SECONDS``
  and a body within ``BODY_TIMEOUT_SECONDS``, or the connection is closed
  (httptools has no deadline of its own: a fresh connection that never sent a
  byte was held forever). Idle keep-alive connections close after
  ``KEEP_ALIVE_SECONDS`` (uvicorn's own timer).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http import httptools_impl

from tracker import logs

log = logs.get_logger(__name__)
HEADER_TIMEOUT_SECONDS = 10.0  # from the connection (or the request's first byte) to its headers
BODY_TIMEOUT_SECONDS = 30.0  # from the headers to the body's last byte
MAX_HEADER_BYTES = 64 * 1024  # httptools sets no limit of its own
KEEP_ALIVE_SECONDS = 5  # an idle kept-alive connection is closed after this
CONNECTIONS_GRACE_SECONDS = 10  # after the listener closes, open requests get this long


class DeadlineProtocol(httptools_impl.HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body read deadlines.

    At shutdown, a connection whose request has not arrived yet is kept until
    that request is answered (``Connection: close``) or its header deadline
    passes: the client sent it while the listener was still open.
    """

    header_timeout_seconds = HEADER_TIMEOUT_SECONDS
    body_timeout_seconds = BODY_TIMEOUT_SECONDS
    max_header_bytes = MAX_HEADER_BYTES
    _deadline: asyncio.TimerHandle | None = None
    _reading_headers = True
    _header_bytes = 0
    _draining = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._reading_headers and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                self.send_400_response("Request headers too large.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_headers:  # the next request on a kept-alive connection
            self._reading_headers, self._header_bytes = True, 0
            self._arm(self.header_timeout_seconds)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._arm(self.body_timeout_seconds)
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def shutdown(self) -> None:
        self._draining = True
        if not self._reading_headers:  # idle, or a request in progress: uvicorn's way
            super().shutdown()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            # A body cut short reaches the app as a disconnect (it answers nothing).
            self.transport.close()


def with_deadlines(
    header_seconds: float = HEADER_TIMEOUT_SECONDS, body_seconds: float = BODY_TIMEOUT_SECONDS
) -> type[DeadlineProtocol]:
    """The protocol class with other deadlines (tests use short ones)."""
    attributes = {"header_timeout_seconds": header_seconds, "body_timeout_seconds": body_seconds}
    return type("DeadlineProtocol", (DeadlineProtocol,), attributes)


class GracefulServer(uvicorn.Server):
    """uvicorn, with ``before_shutdown`` awaited on the first signal *before* the
    listener closes, and no re-raised signal at the end (so the exit status is 0).
    A second signal skips the wait; a third forces the exit."""

    def __init__(
        self, config: uvicorn.Config, before_shutdown: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(config)
        self._before_shutdown = before_shutdown
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:  # noqa: ARG002 - uvicorn's signature
        if self._stopping is None and self._loop is not None and not self.should_exit:
            log.info("shutdown_requested", signal=signal.Signals(sig).name)
            self._loop.call_soon_threadsafe(self._begin_stopping)
        elif self.should_exit:
            self.force_exit = True
        else:
            self.should_exit = True

    def _begin_stopping(self) -> None:
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._stop_after_drain(), name="drain")

    async def _stop_after_drain(self) -> None:
        try:
            await self._before_shutdown()
        finally:
            self.should_exit = True


def config(
    app: ASGIApp, *, host: str, port: int, protocol: type[DeadlineProtocol] = DeadlineProtocol
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        log_config=None,
        access_log=False,  # our own http_request line replaces it (no tokens in URLs)
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=CONNECTIONS_GRACE_SECONDS,
    )


def inherited_socket(fd: int) -> socket.socket:
    """The listening socket a parent (systemd, a supervisor) passed as ``fd``."""
    sock = socket.socket(fileno=fd)  # family and type read from the descriptor
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        sock.detach()  # not ours to close
        raise OSError(f"--fd {fd} is not a listening stream socket")
    return sock


def socket_host(sock: socket.socket) -> str:
    """The address a socket listens on ("localhost" for a Unix socket: local only)."""
    if sock.family in {socket.AF_INET, socket.AF_INET6}:
        host: str = sock.getsockname()[0]
        return host
    return "localhost"


def run(
    app: ASGIApp,
    before_shutdown: Callable[[], Awaitable[None]],
    *,
    host: str,
    port: int,
    sock: socket.socket | None = None,
) -> None:
    """Serve until a signal; returns normally (exit 0) after a graceful stop."""
    server = GracefulServer(config(app, host=host, port=port), before_shutdown)
    if sock is not None:
        log.info("listening_on_inherited_socket", fd=sock.fileno(), address=str(sock.getsockname()))
    server.run(sockets=[sock] if sock is not None else None)
