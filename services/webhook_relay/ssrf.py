"""Server-side request forgery guard: which endpoint URLs and addresses the relay may call.

An endpoint URL is checked when it is registered and again at every delivery, after DNS
resolution: the relay connects only to the addresses it has just checked (the resolver
below is the one aiohttp connects with), so a name that is re-pointed to an internal address
(DNS rebinding) is refused rather than followed.

Refused unless configuration allows them: plain http, and every address that is not
globally routable (private, loopback, link-local, shared, reserved, multicast, unspecified),
for IPv4 and IPv6 alike, including IPv6 forms that embed an IPv4 address (IPv4-mapped,
6to4, Teredo, NAT64).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
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


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
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
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if self._explicitly_allowed(ip):
            return
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            inner = _embedded_ipv4(ip)
            if inner is not None:
                if self._explicitly_allowed(inner):
                    return
                candidates.append(inner)
        for candidate in candidates:
            if not candidate.is_global or candidate.is_multicast:
                raise UnsafeUrl(f"address {ip} is not a public address ({_kind(candidate)})")

    def check_url(self, url: str) -> tuple[str, int]:
        """Checks what can be checked without DNS; returns (host, port). An IP-literal host is
        checked here, a name only after resolution."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UnsafeUrl(f"not a valid URL: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http"):
            raise UnsafeUrl("the URL must be https")
        if scheme == "http" and not self.allow_http:
            raise UnsafeUrl("the URL must be https (http is not allowed by configuration)")
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise UnsafeUrl("the URL has no host")
        literal = _literal(host)
        if literal is not None:
            self.check_address(literal)
        elif host in _LOCAL_NAMES or host.endswith(".localhost"):
            # Resolves to loopback by definition (RFC 6761), whatever DNS says.
            if not self._explicitly_allowed(ipaddress.ip_address("127.0.0.1")):
                raise UnsafeUrl(f"{host} is a loopback name")
        return host, port or (443 if scheme == "https" else 80)

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


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _kind(ip: IPAddress) -> str:
    for name in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{name}", False):
            return name.replace("_", "-")
    return "not globally routable"


Resolve = Callable[[str, int, int], Awaitable[list[ResolveResult]]]


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


async def check_registration(policy: UrlPolicy, url: str, resolver: AbstractResolver) -> None:
    """At registration: the URL's form, and the addresses its name resolves to now."""
    host, port = policy.check_url(url)
    if _literal(host) is not None:
        return
    try:
        results: list[Any] = await resolver.resolve(host, port, socket.AF_UNSPEC)
    except OSError as exc:
        raise UnsafeUrl(f"cannot resolve {host}: {exc}") from None
    policy.check_resolved(host, [r["host"] for r in results])
