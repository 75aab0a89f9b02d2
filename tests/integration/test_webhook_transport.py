"""The webhook transport against a real HTTP server on 127.0.0.1: vetted at connect time.

Only loopback is ever dialled: names resolve through injected resolvers to 127.0.0.x, and
where a refusal is expected, the refused address is loopback too, so a broken check could
not reach outside.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import pytest

from tracker.webhooks import destinations, transport

LOOPBACK_8 = (ipaddress.ip_network("127.0.0.0/8"),)
ONLY_127_0_0_1 = (ipaddress.ip_network("127.0.0.1/32"),)
LARGE_BODY = bytes(range(256)) * 800  # 200 KiB, past the 64 KiB cap
TIMEOUT_SECONDS = 15.0


@dataclass
class Seen:
    """What the receiver got: (method, path, Host header, body) per request."""

    requests: list[tuple[str, str, str, bytes]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)  # ends /hang


class Receiver(BaseHTTPRequestHandler):
    """/hook answers 204, /redirect a 302 to /elsewhere, /large a 200 KiB body; /hang
    sends its headers and then nothing until the test ends."""

    seen: Seen

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        self.seen.requests.append((self.command, self.path, self.headers["host"], body))
        if self.path == "/redirect":
            self.send_response(HTTPStatus.FOUND)
            self.send_header("location", "/elsewhere")
            self.send_header("content-length", "0")
            self.end_headers()
        elif self.path == "/hang":
            self.send_response(HTTPStatus.OK)
            self.send_header("content-length", "10")
            self.end_headers()
            self.wfile.flush()
            self.seen.release.wait()
        elif self.path == "/large":
            self.send_response(HTTPStatus.OK)
            self.send_header("content-length", str(len(LARGE_BODY)))
            self.end_headers()
            self.wfile.write(LARGE_BODY)
        else:
            self.send_response(HTTPStatus.NO_CONTENT)
            self.end_headers()

    do_GET = do_POST  # noqa: N815 - http.server's naming; a followed redirect would GET

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base name
        """Quiet: the test asserts on ``seen`` instead."""


@pytest.fixture
def receiver() -> Iterator[tuple[int, Seen]]:
    """A threaded HTTP server on 127.0.0.1 and a free port; stopped after the test."""
    seen = Seen()
    handler = type("BoundReceiver", (Receiver,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        seen.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


class Answers:
    """A resolver that gives its answers in turn (the last one from then on) and counts."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = [[ipaddress.ip_address(a) for a in answer] for answer in answers]
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[destinations.Address]:
        assert port > 0
        self.calls.append(host)
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


async def test_a_post_reaches_the_vetted_address_with_its_original_host_header(
    receiver: tuple[int, Seen],
) -> None:
    """With 127.0.0.0/8 allowed, a name that only our resolver knows is dialled by address."""
    port, seen = receiver
    resolver = Answers(["127.0.0.1"])
    async with transport.build_client(
        LOOPBACK_8, timeout_seconds=TIMEOUT_SECONDS, resolver=resolver
    ) as client:
        answer = await transport.post(
            client,
            f"http://hooks.test:{port}/hook",
            content=b'{"type":"webhook.test"}',
            headers={"content-type": "application/json"},
            timeout_seconds=TIMEOUT_SECONDS,
        )
    assert answer.status_code == HTTPStatus.NO_CONTENT
    assert seen.requests == [("POST", "/hook", f"hooks.test:{port}", b'{"type":"webhook.test"}')]
    assert resolver.calls == ["hooks.test"]


async def test_localhost_is_reached_through_the_system_resolver_when_loopback_is_allowed(
    receiver: tuple[int, Seen],
) -> None:
    """localhost resolves (for real) to loopback, which the allowed networks open."""
    port, seen = receiver
    allowed = (*LOOPBACK_8, ipaddress.ip_network("::1/128"))
    async with transport.build_client(allowed, timeout_seconds=TIMEOUT_SECONDS) as client:
        response = await client.post(f"http://localhost:{port}/hook", content=b"x")
    assert response.status_code == HTTPStatus.NO_CONTENT
    assert [r[2] for r in seen.requests] == [f"localhost:{port}"]


async def test_the_transport_refuses_loopback_when_no_network_is_allowed(
    receiver: tuple[int, Seen],
) -> None:
    """Without an allowed network, 127.0.0.1 is refused before any connection."""
    port, seen = receiver
    async with transport.build_client((), timeout_seconds=TIMEOUT_SECONDS) as client:
        with pytest.raises(httpx.ConnectError, match="loopback") as caught:
            await client.post(f"http://127.0.0.1:{port}/hook", content=b"x")
    assert transport.is_refusal(caught.value)
    assert seen.requests == []


async def test_a_name_rebound_after_registration_is_refused_at_connect_time(
    receiver: tuple[int, Seen],
) -> None:
    """Registration saw 127.0.0.1 (allowed); the connection's own lookup sees 127.0.0.2."""
    port, seen = receiver
    resolver = Answers(["127.0.0.1"], ["127.0.0.2"])
    url = f"http://rebind.test:{port}/hook"
    registered = await destinations.check_url(url, ONLY_127_0_0_1, resolver=resolver)
    assert registered.addresses == (ipaddress.ip_address("127.0.0.1"),)
    async with transport.build_client(
        ONLY_127_0_0_1, timeout_seconds=TIMEOUT_SECONDS, resolver=resolver
    ) as client:
        with pytest.raises(httpx.ConnectError, match=r"127\.0\.0\.2") as caught:
            await client.post(url, content=b"x")
    assert transport.is_refusal(caught.value)
    assert resolver.calls == ["rebind.test", "rebind.test"]
    assert seen.requests == []


async def test_one_refused_address_among_allowed_ones_refuses_the_connection(
    receiver: tuple[int, Seen],
) -> None:
    """ANY refused address refuses, even when an allowed one would answer."""
    port, seen = receiver
    resolver = Answers(["127.0.0.1", "127.0.0.2"])
    async with transport.build_client(
        ONLY_127_0_0_1, timeout_seconds=TIMEOUT_SECONDS, resolver=resolver
    ) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(f"http://two.test:{port}/hook", content=b"x")
    assert seen.requests == []


async def test_a_redirect_is_returned_not_followed(receiver: tuple[int, Seen]) -> None:
    """A 302 is just a non-2xx answer: /elsewhere is never asked for."""
    port, seen = receiver
    async with transport.build_client(LOOPBACK_8, timeout_seconds=TIMEOUT_SECONDS) as client:
        answer = await transport.post(
            client,
            f"http://127.0.0.1:{port}/redirect",
            content=b"x",
            headers={},
            timeout_seconds=TIMEOUT_SECONDS,
        )
    assert answer.status_code == HTTPStatus.FOUND
    assert answer.headers["location"] == "/elsewhere"
    assert [r[1] for r in seen.requests] == ["/redirect"]


async def test_a_large_answer_is_cut_at_64_kib_and_its_first_kib_kept(
    receiver: tuple[int, Seen],
) -> None:
    """At most 64 KiB is read; the attempt log keeps the first 1 KiB."""
    port, _ = receiver
    async with transport.build_client(LOOPBACK_8, timeout_seconds=TIMEOUT_SECONDS) as client:
        answer = await transport.post(
            client,
            f"http://127.0.0.1:{port}/large",
            content=b"x",
            headers={},
            timeout_seconds=TIMEOUT_SECONDS,
        )
    assert answer.status_code == HTTPStatus.OK
    assert answer.truncated
    assert answer.bytes_read == transport.MAX_RESPONSE_BYTES == 64 * 1024
    assert answer.excerpt == LARGE_BODY[: transport.KEPT_RESPONSE_BYTES]
    assert len(answer.excerpt) == 1024


async def test_an_empty_answer_is_not_marked_cut(receiver: tuple[int, Seen]) -> None:
    """A short body is read whole and not flagged as truncated."""
    port, _ = receiver
    async with transport.build_client(LOOPBACK_8, timeout_seconds=TIMEOUT_SECONDS) as client:
        answer = await transport.post(
            client,
            f"http://127.0.0.1:{port}/hook",
            content=b"x",
            headers={},
            timeout_seconds=TIMEOUT_SECONDS,
        )
    assert (answer.excerpt, answer.bytes_read, answer.truncated) == (b"", 0, False)


async def test_an_answer_that_never_completes_is_cut_off_by_the_total_timeout(
    receiver: tuple[int, Seen],
) -> None:
    """The whole attempt is bounded: a body that never comes ends as an httpx timeout."""
    port, _ = receiver
    async with transport.build_client(LOOPBACK_8, timeout_seconds=TIMEOUT_SECONDS) as client:
        with pytest.raises(httpx.TimeoutException, match="no full answer"):
            await transport.post(
                client,
                f"http://127.0.0.1:{port}/hang",
                content=b"x",
                headers={},
                timeout_seconds=0.2,
            )


class Recording(httpcore.AsyncMockBackend):
    """An in-memory backend that records what it was asked to dial (no network at all)."""

    def __init__(self) -> None:
        super().__init__([b"HTTP/1.1 204 No Content\r\n\r\n"])
        self.dialled: list[str] = []

    async def connect_tcp(self, host: str, port: int, *_: object) -> httpcore.AsyncNetworkStream:
        self.dialled.append(host)
        return await super().connect_tcp(host, port)


async def test_plain_http_to_an_allowed_private_address_is_refused_at_connect_time() -> None:
    """An allowed non-loopback network still needs https; nothing is dialled."""
    inner = Recording()
    backend = transport.VettingBackend(
        (ipaddress.ip_network("10.0.0.0/8"),),
        plain_http=True,
        resolver=Answers(["10.0.0.7"]),
        inner=inner,
    )
    with pytest.raises(transport.DestinationRefused, match="https"):
        await backend.connect_tcp("private.test", 80, timeout=5)
    assert inner.dialled == []


async def test_https_to_an_allowed_private_address_dials_the_vetted_address() -> None:
    """Over https the same allowed address passes, and the backend dials the IP itself."""
    inner = Recording()
    backend = transport.VettingBackend(
        (ipaddress.ip_network("10.0.0.0/8"),),
        plain_http=False,
        resolver=Answers(["10.0.0.7"]),
        inner=inner,
    )
    await backend.connect_tcp("private.test", 443, timeout=5)
    assert inner.dialled == ["10.0.0.7"]


async def test_a_unix_socket_is_never_a_destination() -> None:
    """The backend refuses unix sockets outright."""
    backend = transport.VettingBackend((), plain_http=False, inner=Recording())
    with pytest.raises(transport.DestinationRefused):
        await backend.connect_unix_socket("/run/docker.sock")
