"""The HTTP client for webhook deliveries: vetted at connect time, bounded, no redirects.

A name that was public at registration may resolve inside later (DNS rebinding), so each
new connection resolves the host once, vets every address again
(``destinations.vet``), and dials a vetted address itself. This happens in an httpcore
network backend, below the request: the URL keeps its host name, so the Host header, TLS
SNI and the certificate check all use the original name, and a pooled connection is only
ever reused for that same name. A refusal is an ``httpx.ConnectError`` whose cause is a
``DestinationRefused``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import httpcore
import httpx

from tracker.webhooks import destinations

CONNECT_TIMEOUT_SECONDS = 5.0
MAX_RESPONSE_BYTES = 64 * 1024
KEPT_RESPONSE_BYTES = 1024
MAX_CONNECTIONS = 100


class DestinationRefused(httpcore.ConnectError):
    """The host resolved to an address that webhooks may not reach."""


def is_refusal(exc: BaseException) -> bool:
    """True if an httpx error was our refusal of the destination, not a network failure."""
    return isinstance(exc, DestinationRefused) or isinstance(exc.__cause__, DestinationRefused)


class VettingBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, vets every address, and connects to a vetted address only."""

    def __init__(
        self,
        allowed_networks: Sequence[destinations.Network],
        *,
        plain_http: bool,
        resolver: destinations.Resolver | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._allowed = tuple(allowed_networks)
        self._plain_http = plain_http
        self._resolver = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # One deadline covers resolving and dialling, so several addresses cannot
        # multiply the connect timeout.
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._vetted(host, port, timeout)
                return await self._dial(addresses, port, timeout, local_address, socket_options)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection to {host} within {timeout} s") from None

    async def _vetted(
        self, host: str, port: int, timeout_seconds: float | None
    ) -> tuple[destinations.Address, ...]:
        try:
            addresses = await destinations.resolve(
                host,
                port,
                resolver=self._resolver,
                timeout_seconds=timeout_seconds or destinations.RESOLVE_TIMEOUT_SECONDS,
            )
        except ValueError as exc:
            raise httpcore.ConnectError(str(exc)) from None
        try:
            destinations.vet(addresses, self._allowed)
            if self._plain_http:
                destinations.require_tls_unless_allowed_loopback("http", addresses, self._allowed)
        except ValueError as exc:
            raise DestinationRefused(f"refused {host}: {exc}") from None
        return addresses

    async def _dial(
        self,
        addresses: Sequence[destinations.Address],
        port: int,
        timeout_seconds: float | None,
        local_address: str | None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
    ) -> httpcore.AsyncNetworkStream:
        options = list(socket_options or ())
        failure: httpcore.ConnectError | None = None
        for address in addresses:  # every one vetted above; the first that answers wins
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout_seconds, local_address, options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        raise failure or httpcore.ConnectError("no address to connect to")

    async def connect_unix_socket(  # httpcore's interface; nothing of it is used
        self,
        path: str,  # noqa: ARG002
        timeout: float | None = None,  # noqa: ARG002, ASYNC109
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,  # noqa: ARG002
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused("a webhook never goes to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PoolOnBackend(httpx.AsyncHTTPTransport):
    """httpx's transport (its request and error mapping) on a pool using our backend."""

    def __init__(
        self, backend: httpcore.AsyncNetworkBackend, *, ssl_context: ssl.SSLContext
    ) -> None:
        # No environment proxies: a proxy would dial for us, past the vetting.
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx takes no network backend, so its pool is replaced by one on ours
        # (tests/integration/test_webhook_transport.py proves ours is the one used).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=MAX_CONNECTIONS,
            network_backend=backend,
        )


class VettedTransport(httpx.AsyncBaseTransport):
    """http and https each on their own vetting pool; plain http only to allowed loopback."""

    def __init__(
        self,
        allowed_networks: Sequence[destinations.Network],
        *,
        resolver: destinations.Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        context = ssl_context or ssl.create_default_context()
        self._by_scheme = {
            scheme: _PoolOnBackend(
                VettingBackend(allowed_networks, plain_http=scheme == "http", resolver=resolver),
                ssl_context=context,
            )
            for scheme in ("http", "https")
        }

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._by_scheme.get(request.url.scheme)
        if transport is None:
            raise httpx.UnsupportedProtocol(f"{request.url.scheme!r} is not http(s)")
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self._by_scheme.values():
            await transport.aclose()


def build_client(
    allowed_networks: Sequence[destinations.Network],
    *,
    timeout_seconds: float,
    resolver: destinations.Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """The deliverer's client: vetted connections, connect 5 s, redirects never followed."""
    return httpx.AsyncClient(
        transport=VettedTransport(allowed_networks, resolver=resolver, ssl_context=ssl_context),
        timeout=httpx.Timeout(timeout_seconds, connect=CONNECT_TIMEOUT_SECONDS),
        follow_redirects=False,
        trust_env=False,
        # Raw bytes are counted against the cap; a compressed answer could expand past it.
        headers={"accept-encoding": "identity"},
    )


@dataclass(frozen=True)
class Answer:
    """What an endpoint answered: its status, headers, and the start of its body."""

    status_code: int
    headers: httpx.Headers
    excerpt: bytes  # the first KEPT_RESPONSE_BYTES, for the attempt log
    bytes_read: int  # at most MAX_RESPONSE_BYTES
    truncated: bool  # the body went on past MAX_RESPONSE_BYTES (left unread)


async def read_capped(response: httpx.Response) -> tuple[bytes, int, bool]:
    """At most MAX_RESPONSE_BYTES of the body: (its first KEPT_RESPONSE_BYTES, read, cut)."""
    kept = bytearray()
    read = 0
    async for chunk in response.aiter_raw():
        if len(kept) < KEPT_RESPONSE_BYTES:
            kept += chunk[: KEPT_RESPONSE_BYTES - len(kept)]
        read += len(chunk)
        if read > MAX_RESPONSE_BYTES:
            return bytes(kept), MAX_RESPONSE_BYTES, True
    return bytes(kept), read, False


async def post(
    client: httpx.AsyncClient,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    timeout_seconds: float,
) -> Answer:
    """POST once (a 3xx is an answer like any other) within ``timeout_seconds`` in all.

    httpx's timeouts bound each read; this bounds the whole attempt, so a slow-drip
    endpoint cannot hold a delivery forever. Raises ``httpx.HTTPError`` on failure.
    """
    try:
        async with (
            asyncio.timeout(timeout_seconds),
            client.stream("POST", url, content=content, headers=headers) as response,
        ):
            excerpt, read, cut = await read_capped(response)
    except TimeoutError:
        raise httpx.TimeoutException(f"no full answer within {timeout_seconds:g} s") from None
    return Answer(
        status_code=response.status_code,
        headers=response.headers,
        excerpt=excerpt,
        bytes_read=read,
        truncated=cut,
    )
