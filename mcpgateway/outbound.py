"""The outbound guard: URLs a team member sets never reach the host's own networks (SSRF).

Every URL a team member can set (a remote tool server, a webhook, a model credential's base
URL) is checked twice:

- at save, `check_url` parses it, resolves its host and refuses it (`OutboundRefused`, 422,
  naming the field) when any address is loopback, private (RFC 1918, ULA, CGNAT), link-local
  (which holds the cloud metadata endpoints), multicast, unspecified or reserved, in plain,
  IPv4-mapped, 6to4, Teredo or NAT64 form, or when the name is a metadata or localhost name;
- at every connect, the httpx2 clients made here (`guarded_async_client`, `guarded_client`)
  use a network backend that resolves the host itself, checks every address the same way and
  connects to an admitted IP only. TLS SNI and the Host header keep the hostname, a name that
  re-resolves to a private address later (DNS rebinding) is refused, and a redirect to
  anywhere opens a new connection through the same check.

`settings.AGENTDECK_OUTBOUND_ALLOW` (hosts and CIDR ranges) lets an instance operator open
exceptions, e.g. a local Ollama. The maintained SSRF wrappers on PyPI bind to httpx 0.28 and
httpcore 1.x internals, while the SDKs here run on httpx2/httpcore2, so the guard is this
small backend on httpcore2's public `network_backend` hook with `ipaddress` classifying.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpcore2
import httpx2
from django.conf import settings

from mcpgateway.errors import GatewayError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT_S = 3.0

# Names that are metadata services or the host itself whatever DNS says.
BLOCKED_NAMES = frozenset({
    "localhost", "metadata", "metadata.google.internal", "metadata.goog", "metadata.azure.com",
    "instance-data", "instance-data.ec2.internal", "ip6-localhost", "ip6-loopback",
})
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_resolver_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="outbound-dns")


class OutboundRefused(GatewayError):
    """A URL points at an address team members may not reach (422, naming the field)."""

    code = "outbound_refused"
    status = 422


def check_url(url: str, field: str) -> None:
    """Refuse `url` unless it is http(s) and its host resolves to public addresses only.

    A name that does not resolve now is let through: nothing can be reached through it, and
    every connect is checked again.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise OutboundRefused("not a valid URL", field) from None
    if parts.scheme not in ("http", "https"):
        raise OutboundRefused("the URL must start with http:// or https://", field)
    host = parts.hostname
    if not host:
        raise OutboundRefused("the URL has no host", field)
    port = port or (443 if parts.scheme == "https" else 80)
    problem = _name_refusal(host)
    if problem:
        raise OutboundRefused(problem, field)
    try:
        addresses = resolve(host, port)
    except OSError:
        return
    except UnicodeError:  # an empty or over-long label (`a..example.com`): no name can be looked up
        raise OutboundRefused(f"{host!r} is not a valid host name", field) from None
    problem = refusal(host, addresses)
    if problem:
        raise OutboundRefused(problem, field)


def refusal(host: str, addresses: Iterable[IPAddress]) -> str | None:
    """Why `host` (resolved to `addresses`) may not be reached, or None when it may."""
    name = _normal_name(host)
    allowed_hosts, allowed_networks = _allow_list()
    if name in allowed_hosts:
        return None
    problem = _name_refusal(host)
    if problem:
        return problem
    addresses = list(addresses)
    if not addresses:
        return f"{host} resolves to no address"
    for address in addresses:
        if any(address in network for network in allowed_networks):
            continue
        kind = blocked_kind(address)
        if kind:
            what = f"{host} is" if _literal(host) is not None else f"{host} resolves to {address},"
            article = "an" if kind[0] in "aeiou" else "a"
            return (f"{what} {article} {kind} address, which team members may not reach "
                    "(an instance operator can allow it with AGENTDECK_OUTBOUND_ALLOW)")
    return None


def _name_refusal(host: str) -> str | None:
    name = _normal_name(host)
    if name in _allow_list()[0]:
        return None
    if name in BLOCKED_NAMES or name.endswith(".localhost"):
        return f"{host} is a local or cloud-metadata name, which team members may not reach"
    return None


def blocked_kind(address: IPAddress) -> str | None:
    """What kind of non-public address this is (looking through mapped forms), or None."""
    for inner in _embedded(address):
        kind = blocked_kind(inner)
        if kind:
            return kind
    checks = (
        ("loopback", address.is_loopback), ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified), ("multicast", address.is_multicast),
        ("private", address.is_private or address in _CGNAT), ("reserved", address.is_reserved),
        ("non-public", not address.is_global),
    )
    return next((kind for kind, hit in checks if hit), None)


def _embedded(address: IPAddress) -> list[IPAddress]:
    """The IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    inner: list[IPAddress] = []
    if address.ipv4_mapped is not None:
        inner.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        inner.append(address.sixtofour)
    if address.teredo is not None:
        inner.extend(address.teredo)
    if any(address in network for network in _NAT64):
        inner.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return inner


def _normal_name(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _allow_list() -> tuple[frozenset[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    hosts: set[str] = set()
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for entry in getattr(settings, "AGENTDECK_OUTBOUND_ALLOW", []) or []:
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.add(_normal_name(entry))
    return frozenset(hosts), networks


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _addresses(infos: Iterable[tuple[Any, ...]]) -> list[IPAddress]:
    seen: dict[IPAddress, None] = {}
    for info in infos:
        seen[ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])] = None
    return list(seen)


def resolve(host: str, port: int, timeout: float = RESOLVE_TIMEOUT_S) -> list[IPAddress]:
    """Every address `host` resolves to (blocking, bounded by `timeout`); OSError when it fails."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    future = _resolver_pool.submit(socket.getaddrinfo, host.rstrip("."), port, type=socket.SOCK_STREAM)
    try:
        return _addresses(future.result(timeout=timeout))
    except concurrent.futures.TimeoutError:
        raise OSError(f"resolving {host} timed out") from None


async def resolve_async(host: str, port: int, timeout: float = RESOLVE_TIMEOUT_S) -> list[IPAddress]:
    """`resolve` for async code."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        with anyio.fail_after(timeout):
            infos = await anyio.getaddrinfo(host.rstrip("."), port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise OSError(f"resolving {host} timed out") from None
    return _addresses(infos)


def _admitted(host: str, addresses: list[IPAddress]) -> list[IPAddress]:
    problem = refusal(host, addresses)
    if problem:
        raise httpcore2.ConnectError(f"refused by the outbound guard: {problem}")
    return addresses


class GuardedAsyncBackend(httpcore2.AsyncNetworkBackend):
    """Resolves, checks every address, then connects to an admitted IP (never the name)."""

    def __init__(self, inner: httpcore2.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore2.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        try:
            addresses = await resolve_async(host, port, min(timeout or RESOLVE_TIMEOUT_S, RESOLVE_TIMEOUT_S))
        except OSError as exc:
            raise httpcore2.ConnectError(f"cannot resolve {host}: {exc}") from exc
        last: Exception | None = None
        for address in _admitted(host, addresses):
            try:
                return await self._inner.connect_tcp(str(address), port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last = exc
        raise last or httpcore2.ConnectError(f"cannot connect to {host}")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("the outbound guard allows no Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedBackend(httpcore2.NetworkBackend):
    """The blocking twin of `GuardedAsyncBackend`, for synchronous senders (webhooks)."""

    def __init__(self, inner: httpcore2.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore2.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore2.NetworkStream:
        try:
            addresses = resolve(host, port, min(timeout or RESOLVE_TIMEOUT_S, RESOLVE_TIMEOUT_S))
        except OSError as exc:
            raise httpcore2.ConnectError(f"cannot resolve {host}: {exc}") from exc
        last: Exception | None = None
        for address in _admitted(host, addresses):
            try:
                return self._inner.connect_tcp(str(address), port, timeout=timeout, local_address=local_address,
                                               socket_options=socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last = exc
        raise last or httpcore2.ConnectError(f"cannot connect to {host}")

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore2.NetworkStream:
        raise httpcore2.ConnectError("the outbound guard allows no Unix sockets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _swap_backend(transport: httpx2.AsyncHTTPTransport | httpx2.HTTPTransport, backend: Any) -> None:
    # httpx2's transports take no network backend, but their httpcore2 pool does: set it before
    # any connection exists, so every connection the pool ever opens goes through the guard.
    pool = transport._pool
    if not hasattr(pool, "_network_backend") or getattr(pool, "_connections", None):
        raise RuntimeError("unexpected httpcore2 pool layout; the outbound guard cannot be installed")
    pool._network_backend = backend


def guarded_async_transport() -> httpx2.AsyncHTTPTransport:
    """An httpx2 transport whose every connection passes the outbound guard (no env proxies)."""
    transport = httpx2.AsyncHTTPTransport()
    _swap_backend(transport, GuardedAsyncBackend())
    return transport


def guarded_async_client(**kwargs: Any) -> httpx2.AsyncClient:
    """An `httpx2.AsyncClient` (any client options but transport) behind the outbound guard."""
    kwargs.setdefault("follow_redirects", False)
    return httpx2.AsyncClient(transport=guarded_async_transport(), trust_env=False, **kwargs)


def guarded_client(**kwargs: Any) -> httpx2.Client:
    """A blocking `httpx2.Client` behind the outbound guard."""
    transport = httpx2.HTTPTransport()
    _swap_backend(transport, GuardedBackend())
    kwargs.setdefault("follow_redirects", False)
    return httpx2.Client(transport=transport, trust_env=False, **kwargs)
