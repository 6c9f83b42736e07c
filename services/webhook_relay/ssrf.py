"""Server-side request forgery guard: which endpoint URLs and addresses the relay may call.

Addresses are deny-by-default. An address passes only if it is global unicast (IPv4 outside
every special-purpose block; IPv6 inside 2000::/3) and in no special-purpose block of the IANA
IPv4 and IPv6 special-purpose registries, nor multicast, site-local or reserved space. The
IPv6 forms that carry an IPv4 address the packet really goes to (IPv4-mapped, NAT64's
well-known prefix, 6to4, Teredo) are judged by that IPv4 address. Other embedding forms
(IPv4-compatible, IPv4-translated, local-use NAT64) are refused whatever they embed.
`WEBHOOK_ALLOWED_NETWORKS` is the only way to let anything else through.

A URL is judged as the HTTP client reads it: yarl (what aiohttp uses) parses it, and the
`Target` it yields carries the very `yarl.URL` object the sender gives aiohttp. A URL that
another parser could read differently is refused outright: anything but printable ASCII,
backslashes, userinfo (`user:pass@`), percent-encoding or odd numeric forms in the host, or a
host yarl normalises to something else than what was written.

Three checks at every delivery, each on what the client is about to use:
1. `UrlPolicy.check_url`: the scheme and an IP-literal host (aiohttp never resolves those).
2. `SafeResolver`: every address a name resolves to, on every connection (no DNS cache).
   aiohttp connects to exactly the addresses returned, so there is no second lookup to rebind.
3. `guarded_socket_factory`: the address of each socket right before `connect()`, whatever
   produced it. A DNS rebinding, or an aiohttp change in how it resolves, cannot get past it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL = 2000
_LOCAL_NAMES = ("localhost", "localhost.localdomain")


class UnsafeUrl(ValueError):
    """The URL or an address it resolves to is not allowed."""


class UnsafeAddress(OSError):
    """Raised inside the connector: aiohttp reports it as a connection error, before any
    connection is attempted."""


def parse_networks(spec: str) -> tuple[Network, ...]:
    """`127.0.0.0/8, ::1/128` -> networks (bare addresses allowed)."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()
    )


# --- addresses ---------------------------------------------------------------------------------

Embedded = Callable[[ipaddress.IPv6Address], list[ipaddress.IPv4Address]]


@dataclass(frozen=True)
class Block:
    """A special-purpose block. `embeds`: the IPv4 addresses a packet to it really reaches;
    such an address is judged by those instead of being refused."""

    network: Network
    name: str
    embeds: Embedded | None = None


def _low32(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]


def _mapped(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    return [ip.ipv4_mapped] if ip.ipv4_mapped is not None else []


def _sixtofour(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    return [ip.sixtofour] if ip.sixtofour is not None else []


def _teredo(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    return list(ip.teredo) if ip.teredo is not None else []  # server and client


def _blocks(rows: Iterable[tuple[str, str] | tuple[str, str, Embedded]]) -> tuple[Block, ...]:
    blocks = [Block(ipaddress.ip_network(r[0]), r[1], r[2] if len(r) > 2 else None) for r in rows]
    # Most specific first, so an address gets the name (and the rule) of its narrowest block.
    return tuple(sorted(blocks, key=lambda b: -b.network.prefixlen))


# IANA IPv4 Special-Purpose Address Registry (2025), plus multicast. Blocks the registry marks
# globally reachable (AS112, AMT, PCP/TURN anycast inside 192.0.0.0/24) are refused too: no
# CRM lives there, and refusing costs nothing.
IPV4_SPECIAL = _blocks(
    [
        ("0.0.0.0/8", "this network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.31.196.0/24", "AS112"),
        ("192.52.193.0/24", "AMT"),
        ("192.88.99.0/24", "deprecated 6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("192.175.48.0/24", "AS112 direct delegation"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("255.255.255.255/32", "limited broadcast"),
    ]
)

# IANA IPv6 Special-Purpose Address Registry (2025), plus multicast and site-local. Anything
# outside 2000::/3 that is not listed is refused as "not global unicast" anyway; the entries
# outside it are here for their names and for the embedding rules.
IPV6_SPECIAL = _blocks(
    [
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("::ffff:0:0/96", "IPv4-mapped", _mapped),
        ("::ffff:0:0:0/96", "IPv4-translated"),
        ("64:ff9b::/96", "NAT64", _low32),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("100:0:0:1::/64", "dummy prefix"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001::/32", "Teredo", _teredo),
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4", _sixtofour),
        ("2620:4f:8000::/48", "AS112 direct delegation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "SRv6 SIDs"),
        ("fc00::/7", "unique local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    ]
)
GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")


def _block(ip: IPAddress) -> Block | None:
    table = IPV4_SPECIAL if ip.version == 4 else IPV6_SPECIAL
    return next((b for b in table if ip in b.network), None)


# --- URLs --------------------------------------------------------------------------------------

_SCHEME_AND_AUTHORITY = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_PORT = re.compile(r"[1-9][0-9]{0,4}")


@dataclass(frozen=True)
class Target:
    """What the HTTP client will connect to. `url` is the object to hand to aiohttp, so that
    nothing parses the text a second time."""

    url: URL
    host: str  # url.raw_host: ASCII, lower case, IPv6 without brackets
    port: int
    literal: IPAddress | None  # the host, when it is an IP address


def parse_url(url: object) -> Target:
    """The URL's form, without any policy: refuses what could be read two ways, and
    credentials. Pure (the domain uses it too, so no event can carry such a URL)."""
    if not isinstance(url, str) or not url:
        raise UnsafeUrl("the URL must be a non-empty string")
    if len(url) > MAX_URL:
        raise UnsafeUrl(f"the URL is longer than {MAX_URL} characters")
    if not _PRINTABLE_ASCII.fullmatch(url):
        # Covers control characters, spaces, NUL, full-width and ideographic look-alikes,
        # and Unicode hosts (which IDNA would fold into something else than written).
        raise UnsafeUrl(
            "the URL must be printable ASCII without spaces: percent-encode the path, and write"
            " an international host name in its ASCII (xn--) form"
        )
    if "\\" in url:
        raise UnsafeUrl("the URL must not contain a backslash")
    head = _SCHEME_AND_AUTHORITY.match(url)
    if head is None:
        raise UnsafeUrl("the URL must be absolute: scheme://host/path")
    authority = head["authority"]
    if "@" in authority:
        # Credentials would be kept in the endpoint's events for good, and shown in listings.
        raise UnsafeUrl(
            "the URL must not contain credentials (user:password@); authenticate the relay's"
            " requests by their signature instead"
        )
    if head["scheme"].lower() not in ("https", "http"):
        raise UnsafeUrl("the URL must be https")
    written_host, port_text = _split_authority(authority)
    try:
        parsed = URL(url)
    except ValueError as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from None
    host = parsed.raw_host or ""
    if parsed.user is not None or parsed.password is not None:
        raise UnsafeUrl("the URL must not contain credentials (user:password@)")
    literal = _written_literal(written_host)
    if literal is not None:
        if _address_or_none(host) != literal:
            raise UnsafeUrl(f"the host {written_host} is read as {host} by the HTTP client")
    else:
        _check_name(written_host)
        if host != written_host.lower():
            raise UnsafeUrl(f"the host {written_host} is read as {host} by the HTTP client")
    if port_text is not None and (
        not _PORT.fullmatch(port_text) or not 0 < int(port_text) <= 65535
    ):
        raise UnsafeUrl("the port must be a number from 1 to 65535")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return Target(parsed, host, port, literal)


def _split_authority(authority: str) -> tuple[str, str | None]:
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise UnsafeUrl("the URL's IPv6 host has no closing bracket")
        host, rest = authority[: end + 1], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            raise UnsafeUrl("unexpected text after the URL's IPv6 host")
        return host, rest[1:] if rest else None
    host, colon, port = authority.partition(":")
    return host, port if colon else None


def _written_literal(host: str) -> IPAddress | None:
    if host.startswith("["):
        inner = host[1:-1]
        if "%" in inner:
            raise UnsafeUrl("the URL's IPv6 host must not carry a zone (%)")
        try:
            return ipaddress.IPv6Address(inner)
        except ValueError:
            raise UnsafeUrl(f"{host} is not an IPv6 address") from None
    try:
        # Python accepts only the canonical dotted quad (no octal, hex or short forms).
        return ipaddress.IPv4Address(host)
    except ValueError:
        return None


def _check_name(host: str) -> None:
    if not host:
        raise UnsafeUrl("the URL has no host")
    name = host.lower()
    labels = (name[:-1] if name.endswith(".") else name).split(".")
    if len(name) > 254 or not all(_LABEL.fullmatch(label) for label in labels):
        raise UnsafeUrl(f"{host} is not a host name (letters, digits, hyphens, dots)")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # 127.1, 2130706433, 0x7f000001, 0177.0.0.1: getaddrinfo and browsers read these
        # as IPv4 addresses; only the canonical dotted quad is accepted as one.
        raise UnsafeUrl(f"{host} is a non-canonical IPv4 address; write it as a.b.c.d")


def _address_or_none(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class UrlPolicy:
    allow_http: bool = False
    allowed_networks: tuple[Network, ...] = field(default_factory=tuple)

    @classmethod
    def from_settings(cls, allow_http: bool, allowed_networks: str) -> UrlPolicy:
        return cls(allow_http, parse_networks(allowed_networks))

    def _explicitly_allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allowed_networks)

    def check_address(self, address: str | IPAddress) -> None:
        """Refuses (UnsafeUrl) every address but global unicast ones and the configured
        networks."""
        try:
            ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        except ValueError:
            raise UnsafeUrl(f"{address!r} is not an IP address") from None
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
            raise UnsafeUrl(f"address {ip} has a zone: it is local to one link")
        if self._explicitly_allowed(ip):
            return
        block = _block(ip)
        if block is not None and block.embeds is not None:
            inner = block.embeds(ip)  # type: ignore[arg-type]  # IPv6 blocks only
            if not inner:
                raise UnsafeUrl(f"address {ip} is refused ({block.name})")
            for v4 in inner:
                try:
                    self.check_address(v4)
                except UnsafeUrl as exc:
                    raise UnsafeUrl(f"address {ip} ({block.name}) carries {v4}: {exc}") from None
            return
        if block is not None:
            raise UnsafeUrl(f"address {ip} is not a public address ({block.name})")
        if isinstance(ip, ipaddress.IPv6Address) and ip not in GLOBAL_UNICAST_V6:
            raise UnsafeUrl(f"address {ip} is not a public address (not global unicast)")

    def check_url(self, url: object) -> Target:
        """Checks what can be checked without DNS; returns what the client will connect to.
        An IP-literal host is checked here, a name only after resolution."""
        target = parse_url(url)
        if target.url.scheme == "http" and not self.allow_http:
            raise UnsafeUrl("the URL must be https (http is not allowed by configuration)")
        if target.literal is not None:
            self.check_address(target.literal)
            return target
        name = target.host.rstrip(".")
        if name in _LOCAL_NAMES or name.endswith(".localhost"):
            # Resolves to loopback by definition (RFC 6761), whatever DNS says.
            if not self._explicitly_allowed(ipaddress.ip_address("127.0.0.1")):
                raise UnsafeUrl(f"{name} is a loopback name")
        return target

    def check_resolved(self, host: str, addresses: Iterable[str]) -> None:
        found = list(addresses)
        if not found:
            raise UnsafeUrl(f"{host} does not resolve")
        for address in found:
            try:
                self.check_address(address)
            except UnsafeUrl as exc:
                # Any bad address refuses the name: a resolver may return them in any order.
                raise UnsafeUrl(f"{host} resolves to a refused address: {exc}") from None


class SafeResolver(AbstractResolver):
    """aiohttp resolver that refuses names resolving to addresses the policy refuses. aiohttp
    connects to exactly the addresses returned here, so there is no second lookup to rebind."""

    def __init__(self, policy: UrlPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        try:
            self.policy.check_resolved(host, [r["host"] for r in results])
        except UnsafeUrl as exc:
            raise UnsafeAddress(str(exc)) from None
        return results

    async def close(self) -> None:
        await self.inner.close()


def guarded_socket_factory(policy: UrlPolicy) -> SocketFactoryType:
    """aiohttp's last step before `connect()`: the socket is made only for an address the
    policy allows. This covers IP-literal hosts (aiohttp does not resolve them) and anything
    a resolver might have let through."""

    def make(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise UnsafeAddress(f"refused: address family {family!r}")
        if family == socket.AF_INET6 and len(sockaddr) > 3 and sockaddr[3]:
            raise UnsafeAddress(f"refused: address {sockaddr[0]} has a zone")
        try:
            policy.check_address(str(sockaddr[0]))
        except UnsafeUrl as exc:
            raise UnsafeAddress(str(exc)) from None
        return socket.socket(family=family, type=type_, proto=proto)

    return make


async def check_registration(policy: UrlPolicy, url: str, resolver: AbstractResolver) -> None:
    """At registration: the URL's form, and every address its name resolves to now, through
    the same resolver class the delivery's connector uses."""
    target = policy.check_url(url)
    if target.literal is not None:
        return
    try:
        await SafeResolver(policy, resolver).resolve(target.host, target.port, socket.AF_UNSPEC)
    except UnsafeAddress as exc:
        raise UnsafeUrl(str(exc)) from None
    except OSError as exc:
        raise UnsafeUrl(f"cannot resolve {target.host}: {exc}") from None


def unsafe_cause(exc: BaseException) -> UnsafeAddress | None:
    """The UnsafeAddress behind a connection error, if that is what refused it (aiohttp and
    aiohappyeyeballs may wrap it, or fold several into one OSError)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, UnsafeAddress):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__
    return None
