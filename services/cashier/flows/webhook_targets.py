"""Webhook targets at the edges: refused at creation (422) and, at delivery, resolved, checked and pinned.

`PinnedTransport` is the webhook client's transport. For every request it re-checks the URL, resolves the
host once, refuses if ANY resolved address is internal (domain/webhook_targets.py), then connects to the
checked address itself (the URL's host replaced by the IP; Host header and TLS SNI/certificate check keep
the name). So a name that resolves to a public address at check time and to 127.0.0.1 a moment later
(DNS rebinding) cannot reach the inside: no second resolution ever happens. Connections are not kept
alive, so a connection made for one name is never reused for another that shares its address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx

from libs.common.errors import Problem
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


class PinnedTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, allow_http: bool, allow_loopback: bool) -> None:
        self.allow_http = allow_http
        self.allow_loopback = allow_loopback
        self._inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0), retries=0)

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

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        address = await self.checked_address(request.url)
        pinned = httpx.Request(
            request.method,
            request.url.copy_with(host=str(address)),
            headers=request.headers,  # carries Host: the name, not the address
            stream=request.stream,
            extensions={**request.extensions, "sni_hostname": request.url.host},
        )
        return await self._inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        await self._inner.aclose()


def webhook_client(settings: Settings) -> httpx.AsyncClient:
    """The client merchant webhooks go out through: pinned, checked, no redirects, no proxies from the env
    (a proxy would resolve the name itself, after our check)."""
    return httpx.AsyncClient(
        transport=PinnedTransport(
            allow_http=settings.webhook_allow_http, allow_loopback=settings.webhook_allow_loopback
        ),
        timeout=httpx.Timeout(settings.webhook_timeout_seconds),
        follow_redirects=False,
        trust_env=False,
    )
