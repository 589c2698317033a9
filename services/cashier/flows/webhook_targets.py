"""Webhook targets at the edges: refused at creation (422) and, at delivery, resolved, checked and pinned.

`PinnedTargets` sends every webhook. For every POST it re-checks the URL, resolves the host once, refuses if ANY
resolved address is internal (domain/webhook_targets.py), then connects to the checked address itself (Host header
and TLS SNI/certificate check keep the name). So a name that resolves to a public address at check time and to
127.0.0.1 a moment later (DNS rebinding) cannot reach the inside: no second resolution ever happens. No redirect is
followed (a 3xx is a failed try), no proxy is used (a proxy would resolve the name itself, after our check), and at
most `read_bytes_max` of an answer is read (only its status matters).

Connections are kept alive per (scheme, name, port, checked address): each such target has its own small pool, so a
connection is reused only for the same name AND the address this request's check pinned, never for another name
that shares the address (its TLS session was verified for its own name) nor after the name moved to another address.
Every request is still checked and resolved first; a name that now resolves to an internal address is refused before
any pooled connection is looked at. Without keep-alive each delivery paid a TCP (and TLS) handshake; the pools are
bounded (`POOLS_MAX`, the least recently used idle ones closed first) and a pool idle for `keepalive_seconds` is
closed (docs/performance.md, fifth pass). Each pool is a `libs.common.keepalive.KeepAliveClient`: the POST without
httpx's client layer (ADR 0003 "When to use which", docs/performance.md "Seventh pass: transport").
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from libs.common.errors import Problem
from libs.common.http import shared_tls_context
from libs.common.keepalive import KeepAliveClient
from services.cashier.config import Settings
from services.cashier.domain.errors import NOTIFY_URL_NOT_ALLOWED
from services.cashier.domain.webhook_targets import IPAddress, address_refusal, is_loopback_name, url_refusal


class TargetRefused(Exception):
    """The webhook target is not allowed (scheme, or an internal address): final, never retried."""


def ensure_allowed_notify_url(settings: Settings, url: str | None, *, field: str = "notify_url") -> None:
    """422 `notify_url_not_allowed` for a target that can be refused before anything is stored."""
    if url is None:
        return
    reason = url_refusal(url, allow_http=settings.webhook_allow_http, allow_loopback=settings.webhook_allow_loopback)
    if reason is not None:
        raise Problem(NOTIFY_URL_NOT_ALLOWED, f"{field} is not an allowed webhook target: {reason}", field=field)


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address the name resolves to (the only step a test may replace, to fake a DNS answer)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


# Targets with a pool of their own at once; beyond it the least recently used idle pool is closed.
POOLS_MAX = 256
# Kept-alive connections per target: deliveries to one target run at most `webhook_concurrency_max` at once.
KEEPALIVE_PER_TARGET_MAX = 10

_TargetKey = tuple[str, str, int, str]  # scheme, the URL's host name, port, the checked address


@dataclass
class _TargetPool:
    """One target's connection pool and how many of its requests are in flight (never closed while > 0)."""

    client: KeepAliveClient
    in_flight: int = 0
    last_used: float = 0.0


class PinnedTargets:
    """The merchants' webhook targets, each POST checked, resolved and pinned (module docstring)."""

    def __init__(
        self, *, allow_http: bool, allow_loopback: bool, timeout_seconds: float, keepalive_seconds: float = 0.0
    ) -> None:
        self.allow_http = allow_http
        self.allow_loopback = allow_loopback
        self.timeout_seconds = timeout_seconds
        self.keepalive_seconds = keepalive_seconds
        self._pools: OrderedDict[_TargetKey, _TargetPool] = OrderedDict()  # least recently used first

    def _target_client(self, key: _TargetKey, authority: str) -> KeepAliveClient:
        """A new connection pool for one target: it connects to the checked address, sends `Host` the URL's
        authority and verifies TLS for the name (one TLS context for every pool: building one loads the CA bundle,
        ~25 ms of CPU)."""
        scheme, name, port, address = key
        host = f"[{address}]" if ":" in address else address
        return KeepAliveClient(
            f"{scheme}://{host}:{port}",
            timeout_seconds=self.timeout_seconds,
            tls=shared_tls_context(),
            server_hostname=name,
            host_header=authority,
            keepalive_max=KEEPALIVE_PER_TARGET_MAX,
            keepalive_seconds=self.keepalive_seconds,
        )

    async def _pool_for(self, key: _TargetKey, authority: str) -> _TargetPool:
        """The target's pool (made on first use), after closing the pools idle too long or beyond `POOLS_MAX`."""
        now = time.monotonic()
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _TargetPool(self._target_client(key, authority))
        self._pools.move_to_end(key)
        pool.last_used = now
        doomed: list[_TargetPool] = []
        for other_key, other in list(self._pools.items()):  # oldest first; stops at the first one still wanted
            if other is pool:
                break
            too_many = len(self._pools) - len(doomed) > POOLS_MAX
            if other.in_flight == 0 and (too_many or now - other.last_used > self.keepalive_seconds):
                doomed.append(self._pools.pop(other_key))
            elif not too_many:
                break
        for other in doomed:
            await other.client.aclose()
        return pool

    async def checked_address(self, url: httpx.URL) -> IPAddress:
        """The one address this request may connect to, or TargetRefused."""
        reason = url_refusal(str(url), allow_http=self.allow_http, allow_loopback=self.allow_loopback)
        if reason is not None:
            raise TargetRefused(reason)
        host = url.host
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = await resolve_host(host, url.port or (443 if url.scheme == "https" else 80))
            except OSError as exc:  # NXDOMAIN, resolver down: an ordinary, retried failure
                raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpx.ConnectError(f"{host} resolves to no address")
        for address in addresses:
            refusal = address_refusal(address, allow_loopback=self.allow_loopback)
            if refusal is not None:
                raise TargetRefused(f"{host} resolves to {address} ({refusal})")
            if is_loopback_name(host) and not address.is_loopback:
                raise TargetRefused(f"{host} resolves to {address}, not loopback")
        return addresses[0]

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *, read_bytes_max: int) -> int:
        """POST `body` to the checked, pinned address of `url`; the answer's status (at most `read_bytes_max` of its
        body read). TargetRefused for a target that is not allowed; httpx's exceptions for a failed exchange."""
        parsed = httpx.URL(url)
        address = await self.checked_address(parsed)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        pool = await self._pool_for((parsed.scheme, parsed.host, port, str(address)), parsed.netloc.decode("ascii"))
        pool.in_flight += 1
        try:
            response = await pool.client.request(
                "POST", parsed.raw_path.decode("ascii"), content=body, headers=headers, read_bytes_max=read_bytes_max
            )
        finally:
            pool.in_flight -= 1
            pool.last_used = time.monotonic()
        return response.status_code

    async def aclose(self) -> None:
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            await pool.client.aclose()


class WebhookClient:
    """The client merchant webhooks go out through (`Cashier.webhook_http`): `post_webhook`, checked and pinned
    (`PinnedTargets`), the one way a webhook leaves."""

    def __init__(self, settings: Settings) -> None:
        self.targets = PinnedTargets(
            allow_http=settings.webhook_allow_http,
            allow_loopback=settings.webhook_allow_loopback,
            timeout_seconds=settings.webhook_timeout_seconds,
            keepalive_seconds=settings.webhook_keepalive_seconds,
        )

    async def post_webhook(self, url: str, body: bytes, headers: Mapping[str, str], *, read_bytes_max: int) -> int:
        return await self.targets.post(url, body, headers, read_bytes_max=read_bytes_max)

    async def aclose(self) -> None:
        await self.targets.aclose()


def webhook_client(settings: Settings) -> WebhookClient:
    """The client merchant webhooks go out through: pinned, checked, no redirects, no proxies."""
    return WebhookClient(settings)
