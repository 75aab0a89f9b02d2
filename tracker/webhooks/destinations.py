"""Webhook destinations: the URL rules at registration and the vetting of addresses.

An endpoint's URL may not steer our POSTs inside (SSRF): every address its host resolves
to is vetted, and one bad address refuses the whole destination, since the connection
could go to any of them. Only ``TRACKER_WEBHOOK_ALLOWED_NETWORKS`` opens a range. The
ranges are listed here explicitly; ``ipaddress``'s properties are a second opinion only,
because they differ between Python versions and miss some cases (100.64.0.0/10 is not
``is_private``; an IPv4-mapped address is judged by the IPv6 table). The same vetting runs
again at connect time (``webhooks.transport``), against the address actually dialled.

A ``ValueError`` from here carries a message fit for a 400 on ``url``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import httpx

MAX_URL_LENGTH = 2048
MAX_PORT = 65535
# A DNS name in its ASCII form: letter-digit-hyphen labels of 1-63, dot-separated.
HOST_NAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?")
RESOLVE_TIMEOUT_SECONDS = 5.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> every address the host resolves to; injected by tests.
Resolver = Callable[[str, int], Awaitable[Sequence[Address]]]


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(cidr), why) for cidr, why in pairs)


REFUSED_IPV4 = _nets(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),  # the retired 6to4 relay anycast
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
)
REFUSED_IPV6 = _nets(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible (deprecated)"),
    ("64:ff9b:1::/48", "reserved"),  # local-use NAT64 prefix
    ("100::/64", "reserved"),  # discard-only
    ("2001:2::/48", "benchmarking"),
    ("2001:10::/28", "reserved"),  # ORCHID
    ("2001:20::/28", "reserved"),  # ORCHIDv2
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "reserved"),  # SRv6 SIDs
    ("fc00::/7", "private (unique local)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "reserved"),  # site-local, deprecated
    ("ff00::/8", "multicast"),
)
GLOBAL_UNICAST_IPV6 = ipaddress.IPv6Network("2000::/3")
NAT64_IPV6 = ipaddress.IPv6Network("64:ff9b::/96")
COMPAT_IPV6 = ipaddress.IPv6Network("::/96")


@dataclass(frozen=True)
class Destination:
    """A vetted endpoint URL and the addresses its host had when it was checked."""

    url: str
    host: str
    port: int
    addresses: tuple[Address, ...]


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compat, NAT64, 6to4, Teredo)."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    in_compat = address in COMPAT_IPV6 and int(address) > 1  # :: and ::1 are not IPv4
    if address in NAT64_IPV6 or in_compat:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)  # the server and the client behind it
    return found


def _listed(address: Address) -> str | None:
    """The category of the explicit tables that ``address`` falls in."""
    table = REFUSED_IPV4 if isinstance(address, ipaddress.IPv4Address) else REFUSED_IPV6
    for network, why in table:
        if address in network:
            return why
    if isinstance(address, ipaddress.IPv6Address) and address not in GLOBAL_UNICAST_IPV6:
        return "reserved"  # nothing outside 2000::/3 is assigned for global unicast
    return None


def _by_properties(address: Address) -> str | None:
    """The standard library's opinion, as a second check behind the tables."""
    for name, why in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(address, name):
            return why
    return None if address.is_global else "not globally routable"


def refusal(address: Address) -> str | None:
    """Why ``address`` may not be a webhook destination, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # Refused whatever it carries (#15): no public endpoint needs the mapped
            # form, and stacks differ on where such a connection really goes.
            return f"IPv4-mapped: {address.ipv4_mapped} inside an IPv6 address"
        for inner in embedded_ipv4(address):
            why = _listed(inner) or _by_properties(inner)
            if why:
                return f"{why} IPv4 {inner} inside an IPv6 address"
        if address in NAT64_IPV6:
            # A translated address goes where its IPv4 goes; the IPv6 tables list
            # these prefixes as special, which says nothing about the destination.
            return None
    return _listed(address) or _by_properties(address)


def is_allowed(address: Address, allowed_networks: Iterable[Network]) -> bool:
    """True if an operator opened a network holding ``address`` (or its mapped IPv4)."""
    candidates: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(a in n for a in candidates for n in allowed_networks if a.version == n.version)


def vet(addresses: Sequence[Address], allowed_networks: Sequence[Network]) -> None:
    """Refuse (ValueError) if ANY address is refused and not in an allowed network."""
    if not addresses:
        raise ValueError("the host resolves to no address")
    for address in addresses:
        why = refusal(address)
        if why and not is_allowed(address, allowed_networks):
            raise ValueError(
                f"the host resolves to {address} ({why}); webhooks may only go "
                "to public addresses (or to TRACKER_WEBHOOK_ALLOWED_NETWORKS)"
            )


def require_tls_unless_allowed_loopback(
    scheme: str, addresses: Sequence[Address], allowed_networks: Sequence[Network]
) -> None:
    """Plain http only when every address is loopback AND in an allowed network."""
    if scheme == "https":
        return
    if not all(_is_loopback(a) and is_allowed(a, allowed_networks) for a in addresses):
        raise ValueError("must use https (plain http is allowed only to allowed loopback)")


def _is_loopback(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def parse_url(url: str) -> tuple[httpx.URL, str, int]:
    """The syntax rules: an absolute http(s) URL with a host, no userinfo, bounded length.

    Parsed by httpx, the parser that sends, so the check and the request agree.
    """
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    if parsed.scheme not in {"http", "https"}:
        raise ValueError("must be an absolute http(s) URL")
    if not parsed.host:
        raise ValueError("must name a host")
    if parsed.userinfo:
        raise ValueError("must not carry a user name or password")
    # The ASCII (IDNA) form is what resolves and what the Host header carries.
    host = parsed.raw_host.decode("ascii")
    if not _is_ip_literal(host) and not HOST_NAME.fullmatch(host):
        raise ValueError("must name a host by a DNS name or an IP address")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if port > MAX_PORT:
        raise ValueError(f"has a port past {MAX_PORT}")
    return parsed, host, port


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def system_resolver(host: str, port: int) -> list[Address]:
    """Every address the system resolver gives for ``host`` (TCP), via the event loop."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # sockaddr[0] is the address text; an IPv6 zone ("fe80::1%eth0") parses too.
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0])) for info in infos))


async def resolve(
    host: str, port: int, *, resolver: Resolver | None = None, timeout_seconds: float
) -> tuple[Address, ...]:
    """The host's addresses (a literal is its own), bounded by ``timeout_seconds``.

    Raises ValueError if the name does not resolve in time.
    """
    try:
        return (ipaddress.ip_address(host),)
    except ValueError:
        pass
    try:
        async with asyncio.timeout(timeout_seconds):
            found = await (resolver or system_resolver)(host, port)
    except TimeoutError:
        raise ValueError(
            f"the host {host!r} did not resolve within {timeout_seconds:g} s"
        ) from None
    except OSError as exc:
        raise ValueError(f"the host {host!r} does not resolve ({exc.strerror or exc})") from None
    except UnicodeError:  # the IDNA codec refuses the name before any lookup
        raise ValueError(f"the host {host!r} is not a valid DNS name") from None
    return tuple(found)


async def check_url(
    url: str, allowed_networks: Sequence[Network], *, resolver: Resolver | None = None
) -> Destination:
    """The registration check: syntax, then every resolved address, then the https rule."""
    parsed, host, port = parse_url(url)
    addresses = await resolve(
        host, port, resolver=resolver, timeout_seconds=RESOLVE_TIMEOUT_SECONDS
    )
    vet(addresses, allowed_networks)
    require_tls_unless_allowed_loopback(parsed.scheme, addresses, allowed_networks)
    return Destination(url=str(parsed), host=host, port=port, addresses=addresses)
