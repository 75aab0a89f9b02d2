"""Webhook destinations: the URL rules and the address vetting, with literal addresses only."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from tracker.errors import ConfigurationError
from tracker.settings import Settings
from tracker.webhooks import destinations

LOOPBACK_8 = (ipaddress.ip_network("127.0.0.0/8"),)

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private (unique local)"),
    ("fd12:3456:789a::1", "private (unique local)"),
    ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.254", "shared (CGNAT)"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 - a literal to refuse, not a bind
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.0.8", "reserved"),
    ("192.88.99.1", "reserved"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("2001:2::1", "benchmarking"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("fec0::1", "reserved"),
    ("100::1", "reserved"),
    ("2001:10::1", "reserved"),
    ("4000::1", "reserved"),
]

EMBEDDED = [
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:100.64.0.1",
    "::10.0.0.1",  # IPv4-compatible
    "::127.0.0.1",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.1.0 (ipaddress calls it global)
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
]

PUBLIC = ["8.8.8.8", "1.1.1.1", "100.128.0.1", "172.32.0.1", "2606:4700:4700::1111"]


def ip(text: str) -> destinations.Address:
    return ipaddress.ip_address(text)


def resolver_of(*addresses: str) -> destinations.Resolver:
    """A resolver that answers every name with ``addresses``."""

    async def resolve(host: str, port: int) -> Sequence[destinations.Address]:
        return [ip(a) for a in addresses]

    return resolve


@pytest.mark.parametrize(("address", "category"), REFUSED)
def test_each_special_range_is_refused_and_named(address: str, category: str) -> None:
    """Every refused category is caught by the tables, with its name in the reason."""
    assert destinations.refusal(ip(address)) == category
    with pytest.raises(ValueError, match=category.replace("(", r"\(").replace(")", r"\)")):
        destinations.vet([ip(address)], ())


@pytest.mark.parametrize("address", EMBEDDED)
def test_an_ipv6_address_carrying_a_refused_ipv4_is_refused(address: str) -> None:
    """Mapped, compatible, NAT64, 6to4 and Teredo addresses are judged by their IPv4 too."""
    why = destinations.refusal(ip(address))
    assert why is not None
    assert why.endswith("inside an IPv6 address")
    with pytest.raises(ValueError, match="inside an IPv6 address"):
        destinations.vet([ip(address)], ())


@pytest.mark.parametrize("address", [*PUBLIC, "2002:808:808::1"])
def test_public_addresses_pass(address: str) -> None:
    """Public unicast addresses (also a 6to4 public IPv4) are not refused."""
    assert destinations.refusal(ip(address)) is None
    destinations.vet([ip(address)], ())


def test_an_ipv4_mapped_address_is_refused_even_when_its_ipv4_is_public() -> None:
    """#15 refuses the IPv4-mapped form outright: ::ffff:8.8.8.8 is not a destination."""
    assert (
        destinations.refusal(ip("::ffff:8.8.8.8")) == "IPv4-mapped: 8.8.8.8 inside an IPv6 address"
    )
    with pytest.raises(ValueError, match="IPv4-mapped"):
        destinations.vet([ip("::ffff:8.8.8.8")], ())


def test_100_64_is_refused_although_ipaddress_does_not_call_it_private() -> None:
    """The CGNAT range is in our table: the standard library's is_private misses it."""
    assert not ip("100.64.0.1").is_private
    assert destinations.refusal(ip("100.64.0.1")) == "shared (CGNAT)"


def test_one_refused_address_among_public_ones_refuses_the_destination() -> None:
    """ANY bad address refuses: the connection could go to any of them."""
    with pytest.raises(ValueError, match=r"10\.0\.0\.1 \(private\)"):
        destinations.vet([ip("8.8.8.8"), ip("10.0.0.1")], ())


def test_an_allowed_network_opens_exactly_its_range() -> None:
    """An allowed network admits its addresses and nothing beside them."""
    allowed = (ipaddress.ip_network("10.1.0.0/16"),)
    destinations.vet([ip("10.1.2.3")], allowed)
    with pytest.raises(ValueError, match="private"):
        destinations.vet([ip("10.2.0.1")], allowed)


def test_an_allowed_ipv4_network_admits_its_mapped_form() -> None:
    """::ffff:127.0.0.1 goes where 127.0.0.1 goes, so 127.0.0.0/8 admits it."""
    destinations.vet([ip("::ffff:127.0.0.1")], LOOPBACK_8)


def test_no_address_at_all_is_refused() -> None:
    """A name with no addresses is not a destination."""
    with pytest.raises(ValueError, match="no address"):
        destinations.vet([], ())


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "http"),
        ("/relative/hook", "http"),
        ("example.com/hook", "http"),
        ("https://", "host"),
        ("https://user:secret@example.com/hook", "user name or password"),
        ("https://user@example.com/hook", "user name or password"),
        ("https://example.com/" + "a" * 2048, "2048 characters"),
        ("https://exa mple.com/", "DNS name"),
        ("https://a%00b.example/", "DNS name"),
        ("https://-bad.example/", "DNS name"),
        ("https://[fe80::1%25eth0]/", "link-local"),
        ("https://[::1/", "valid URL"),
        ("https://example.com:99999/", "port"),
    ],
)
async def test_bad_urls_are_refused_before_any_lookup(url: str, reason: str) -> None:
    """The syntax rules refuse with a message naming what is wrong."""
    with pytest.raises(ValueError, match=reason):
        await destinations.check_url(url, (), resolver=resolver_of("8.8.8.8"))


async def test_a_public_https_url_is_accepted_with_its_addresses() -> None:
    """A public https destination comes back with its host, port and vetted addresses."""
    found = await destinations.check_url(
        "https://Hooks.Example.com/in?x=1", (), resolver=resolver_of("8.8.8.8", "2606:4700::1")
    )
    assert found.url == "https://hooks.example.com/in?x=1"
    assert (found.host, found.port) == ("hooks.example.com", 443)
    assert found.addresses == (ip("8.8.8.8"), ip("2606:4700::1"))


async def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    """The resolved address is vetted, not the name."""
    with pytest.raises(ValueError, match=r"192\.168\.0\.5 \(private\)"):
        await destinations.check_url(
            "https://intranet.example/", (), resolver=resolver_of("192.168.0.5")
        )


async def test_localhost_is_refused_without_an_allowed_network() -> None:
    """localhost resolves to loopback, which is closed by default."""
    with pytest.raises(ValueError, match="loopback"):
        await destinations.check_url("http://localhost:8080/hook", ())


async def test_localhost_over_http_is_accepted_when_127_0_0_1_is_allowed() -> None:
    """With 127.0.0.1/32 allowed, plain http to localhost is fine (every address loopback)."""
    allowed = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
    found = await destinations.check_url("http://localhost:8080/hook", allowed)
    assert found.port == 8080
    assert all(a.is_loopback for a in found.addresses)


async def test_a_literal_loopback_url_over_http_is_accepted_when_allowed() -> None:
    """A literal address needs no resolver and is vetted as itself."""
    found = await destinations.check_url("http://127.0.0.1:9/hook", LOOPBACK_8)
    assert found.addresses == (ip("127.0.0.1"),)


async def test_http_is_refused_to_an_allowed_address_that_is_not_loopback() -> None:
    """An allowed private network still needs https: plain http only to loopback."""
    allowed = (ipaddress.ip_network("10.0.0.0/8"),)
    with pytest.raises(ValueError, match="https"):
        await destinations.check_url("http://10.0.0.7/hook", allowed)
    found = await destinations.check_url("https://10.0.0.7/hook", allowed)
    assert found.addresses == (ip("10.0.0.7"),)


async def test_http_is_refused_to_a_public_address() -> None:
    """Public destinations always need https."""
    with pytest.raises(ValueError, match="https"):
        await destinations.check_url(
            "http://hooks.example.com/", (), resolver=resolver_of("8.8.8.8")
        )


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    """A resolver error becomes a 400-style message, not an OSError."""

    async def failing(host: str, port: int) -> Sequence[destinations.Address]:
        raise OSError(-2, "Name or service not known")

    with pytest.raises(ValueError, match="does not resolve"):
        await destinations.check_url("https://nowhere.invalid/", (), resolver=failing)


def test_the_allowed_networks_setting_reads_comma_separated_cidrs() -> None:
    """TRACKER_WEBHOOK_ALLOWED_NETWORKS parses to networks; empty by default."""
    assert Settings.load().webhook_allowed_networks == ()
    loaded = Settings.load(webhook_allowed_networks="127.0.0.1/32, fd00::/8")
    assert loaded.webhook_allowed_networks == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("fd00::/8"),
    )


@pytest.mark.parametrize("value", ["127.0.0.1/8", "not-a-network", "10.0.0.0/33"])
def test_a_bad_allowed_network_names_the_variable(value: str) -> None:
    """A bad CIDR (host bits set, garbage, a bad prefix) names the variable."""
    with pytest.raises(ConfigurationError, match="TRACKER_WEBHOOK_ALLOWED_NETWORKS"):
        Settings.load(webhook_allowed_networks=value)
