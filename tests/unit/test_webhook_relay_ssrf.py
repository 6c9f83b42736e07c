"""The relay's SSRF guard, table-driven: every special-purpose address (IANA IPv4 and IPv6
special-purpose registries, plus multicast, site-local and the IPv4-embedding forms) is refused
as a URL literal, as a DNS answer at registration and as a DNS answer at delivery; real global
addresses pass. URLs are judged by the host the HTTP client will connect to (yarl), and every
URL whose host another parser could read differently is refused outright.

No test here makes a lookup or a connection: names resolve through a table.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from services.webhook_relay.ssrf import (
    SafeResolver,
    UnsafeAddress,
    UnsafeUrl,
    UrlPolicy,
    check_registration,
)
from tests.unit.test_webhook_relay import FakeDNS

STRICT = UrlPolicy()

# (address, what it is). Independent of the implementation's table on purpose: this is the
# registry as read by the test's author, so a block dropped from the code fails here.
REFUSED: list[tuple[str, str]] = [
    # IPv4 special-purpose registry
    ("0.0.0.0", "unspecified / this host"),
    ("0.1.2.3", "this network 0.0.0.0/8"),
    ("10.0.0.1", "private 10/8"),
    ("10.255.255.255", "private 10/8, last"),
    ("100.64.0.1", "shared address space (CGN) 100.64/10"),
    ("100.127.255.254", "shared address space, last"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback, far end"),
    ("169.254.169.254", "link-local: cloud metadata"),
    ("172.16.0.1", "private 172.16/12"),
    ("172.31.255.254", "private 172.16/12, last"),
    ("192.0.0.1", "IETF protocol assignments 192.0.0/24"),
    ("192.0.0.9", "IETF protocol assignments: PCP anycast"),
    ("192.0.0.170", "NAT64/DNS64 discovery"),
    ("192.0.2.10", "documentation TEST-NET-1"),
    ("192.88.99.1", "6to4 relay anycast (deprecated)"),
    ("192.168.1.1", "private 192.168/16"),
    ("198.18.0.1", "benchmarking 198.18/15"),
    ("198.19.255.254", "benchmarking, last"),
    ("198.51.100.7", "documentation TEST-NET-2"),
    ("203.0.113.9", "documentation TEST-NET-3"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast (SSDP)"),
    ("240.0.0.1", "reserved 240/4"),
    ("255.255.255.255", "limited broadcast"),
    # IPv6 special-purpose registry and friends
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::127.0.0.1", "IPv4-compatible loopback (deprecated form)"),
    ("::10.0.0.1", "IPv4-compatible private"),
    ("::93.184.216.34", "IPv4-compatible, even of a global address: not routable"),
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped private"),
    ("::ffff:169.254.169.254", "IPv4-mapped metadata address"),
    ("::ffff:0:127.0.0.1", "IPv4-translated loopback (SIIT)"),
    ("::ffff:0:93.184.216.34", "IPv4-translated, even of a global address"),
    ("64:ff9b::7f00:1", "NAT64 well-known prefix around 127.0.0.1"),
    ("64:ff9b::a00:1", "NAT64 well-known prefix around 10.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "NAT64 well-known prefix around 169.254.169.254"),
    ("64:ff9b:1::a00:1", "local-use NAT64 64:ff9b:1::/48"),
    ("64:ff9b:1::5db8:d822", "local-use NAT64, even around a global address"),
    ("100::1", "discard-only 100::/64"),
    ("2001::1", "Teredo with server 0.0.0.0"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo, client 10.0.0.1"),
    ("2001:0:a00:1:8000:63bf:a247:27dd", "Teredo, server 10.0.0.1"),
    ("2001:2::1", "benchmarking 2001:2::/48"),
    ("2001:10::1", "ORCHID (deprecated)"),
    ("2001:20::1", "ORCHIDv2"),
    ("2001:1ff::1", "IETF protocol assignments 2001::/23, far end"),
    ("2001:db8::1", "documentation 2001:db8::/32"),
    ("2002:7f00:1::1", "6to4 around 127.0.0.1"),
    ("2002:a00:1::1", "6to4 around 10.0.0.1"),
    ("2002:c0a8:101::", "6to4 around 192.168.1.1"),
    ("2002:a9fe:a9fe::1", "6to4 around 169.254.169.254"),
    ("3fff::1", "documentation 3fff::/20"),
    ("5f00::1", "SRv6 SIDs 5f00::/16"),
    ("4000::1", "outside global unicast 2000::/3"),
    ("1::1", "reserved by the IETF"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local, far end"),
    ("fec0::1", "site-local (deprecated)"),
    ("feff::1", "site-local, far end"),
    ("ff02::1", "multicast, link scope"),
    ("ff0e::1", "multicast, global scope: still not unicast"),
]

ALLOWED = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:82a::200e",
    "::ffff:93.184.216.34",  # mapped: the socket reaches the IPv4 address, which is global
    "64:ff9b::5db8:d822",  # DNS64 on an IPv6-only host: 93.184.216.34 through NAT64
    "2002:5db8:d822::1",  # 6to4 around a global address
    "2001:0:4136:e378:8000:63bf:a247:27dd",  # Teredo: server and client both global
]


def _literal_url(address: str) -> str:
    return f"https://[{address}]/hook" if ":" in address else f"https://{address}/hook"


@pytest.mark.parametrize(("address", "kind"), REFUSED, ids=[a for a, _ in REFUSED])
def test_every_special_purpose_address_is_refused(address: str, kind: str) -> None:
    with pytest.raises(UnsafeUrl):
        STRICT.check_address(address)
    with pytest.raises(UnsafeUrl):
        STRICT.check_url(_literal_url(address))
    # The same address as a DNS answer: refused at registration and at delivery.
    dns = FakeDNS({"crm.example.com": [address]})
    with pytest.raises(UnsafeUrl):
        asyncio.run(check_registration(STRICT, "https://crm.example.com/hook", dns))
    with pytest.raises(UnsafeAddress):
        asyncio.run(SafeResolver(STRICT, dns).resolve("crm.example.com", 443))


@pytest.mark.parametrize("address", ALLOWED)
def test_global_unicast_addresses_pass(address: str) -> None:
    STRICT.check_address(address)
    STRICT.check_url(_literal_url(address))
    dns = FakeDNS({"crm.example.com": [address]})
    asyncio.run(check_registration(STRICT, "https://crm.example.com/hook", dns))
    [answer] = asyncio.run(SafeResolver(STRICT, dns).resolve("crm.example.com", 443))
    assert answer["host"] == address


def test_a_zoned_address_is_refused_even_when_global() -> None:
    for address in ("fe80::1%eth0", "2606:4700:4700::1111%eth0"):
        with pytest.raises(UnsafeUrl):
            STRICT.check_address(address)


def test_allowed_networks_open_exactly_what_they_name_also_inside_embedding_forms() -> None:
    policy = UrlPolicy.from_settings(False, "10.0.0.0/8")
    for ok in ("10.1.2.3", "::ffff:10.1.2.3", "64:ff9b::a01:203"):
        policy.check_address(ok)
    for bad in ("192.168.1.1", "::ffff:192.168.1.1", "::10.1.2.3", "64:ff9b:1::a01:203"):
        with pytest.raises(UnsafeUrl):
            policy.check_address(bad)


# --- the URL as the HTTP client reads it -----------------------------------------------------


class AnyNamePublic(AbstractResolver):
    """Every name resolves to a public address: a refusal below comes from the URL alone."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host="93.184.216.34",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=0,
            )
        ]

    async def close(self) -> None:
        pass


SMUGGLED = [
    "https://127\u30020\u30020\u30021/hook",  # ideographic full stops: yarl reads 127.0.0.1
    "https://127\uff0e0\uff0e0\uff0e1/hook",  # full-width full stops
    "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/hook",  # full-width digits
    "https://127.0.0.1\\@93.184.216.34/",  # backslash: WHATWG and urlsplit disagree
    "https://93.184.216.34\\@127.0.0.1/",
    "https://crm.example.com\\hook",
    "https://user:pass@crm.example.com/hook",  # credentials
    "https://user@crm.example.com/hook",
    "https://@crm.example.com/hook",
    "https://crm.example.com@127.0.0.1/hook",
    "https://127%2E0%2E0%2E1/hook",  # percent-encoded host
    "https://crm%2eexample.com/hook",
    "https://crm.example.com\t/hook",  # a tab that yarl drops
    "https://crm.example.com\n/hook",
    "https://crm.example.com\x00.evil.test/hook",
    "https://crm.exa mple.com/hook",
    "https://127.1/hook",  # numeric IPv4 shorthands getaddrinfo would accept
    "https://2130706433/hook",
    "https://0x7f000001/hook",
    "https://0177.0.0.1/hook",
    "https://127.000.000.001/hook",
    "https://crm.example.123/hook",  # ends in a number: read as IPv4 by WHATWG parsers
    "https://crm.example.com:0/hook",
    "https://crm.example.com:99999/hook",
    "https://crm.example.com:/hook",
    "https://crm.example.com:+443/hook",
    "https://b\u00fccher.example/hook",  # write IDNs in their ASCII (xn--) form
    "https://crm..example.com/hook",
    "https://crm.example.com../hook",
    "https://-crm.example.com/hook",
    "https://[fe80::1%25eth0]/hook",  # a zone
    "https://[::ffff:7f00:1]/hook",
    "https:crm.example.com/hook",  # no authority
    "https:/crm.example.com/hook",
    "//crm.example.com/hook",
    "crm.example.com/hook",
    "https://",
    "https://crm.example.com/" + "a" * 2100,  # over the length limit
]


@pytest.mark.parametrize("url", SMUGGLED)
def test_a_url_another_parser_could_read_differently_is_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        STRICT.check_url(url)
    with pytest.raises(UnsafeUrl):
        asyncio.run(check_registration(STRICT, url, AnyNamePublic()))


@pytest.mark.parametrize(
    "url",
    [
        "https://crm.example.com/hook",
        "https://CRM.Example.COM/hook",  # case is not a different host
        "https://crm.example.com./hook",  # a fully qualified name
        "https://xn--bcher-kva.example/hook",
        "https://crm_1.example.com:8443/p@th?next=a@b&q=%2F#frag",  # @ outside the authority
        "https://93.184.216.34/hook",
        "https://[2606:4700:0:0::1111]:8443/hook",  # the same address, written longer
    ],
)
def test_plain_urls_pass_and_the_checked_host_is_the_one_the_client_connects_to(
    url: str,
) -> None:
    target = STRICT.check_url(url)
    client = URL(url)
    # aiohttp connects to url.raw_host, port url.port: exactly what was checked.
    assert (target.host, target.port) == (client.raw_host, client.port)
    assert target.url == client
    asyncio.run(check_registration(STRICT, url, AnyNamePublic()))
