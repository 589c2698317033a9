"""Sync and async clients: signing, idempotency keys, safe retries, pagination, typed errors.

Every non-GET request gets an `Idempotency-Key` (a UUID, or yours) that stays the same across its
retries, so a retry after a timeout can never create a second payment: the gateway returns the first
answer instead. Each attempt is signed afresh (new timestamp and nonce, as the gateway requires).
"""

from __future__ import annotations

import json as jsonlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from juhe_sdk.errors import APIConnectionError, APIError, error_for
from juhe_sdk.resources import (
    Accounts,
    CashierMerchants,
    Payments,
    Platform,
    Resource,
    Routing,
    Settlement,
    Statements,
    Transfers,
    Wallet,
    WebhookDeliveries,
    WebhookEndpoints,
    attach_resources,
)
from juhe_sdk.signing import Signer

__version__ = "0.1.0"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
PAGE_SIZE_DEFAULT = 50
PAGES_MAX = 10_000


@dataclass(frozen=True, slots=True)
class JuheResponse:
    status: int
    headers: dict[str, str]
    data: Any

    @property
    def replayed(self) -> bool:
        """True when the gateway answered from its idempotency store (the request was a repeat)."""
        return self.headers.get("idempotent-replayed") == "true"


class _Core:
    # Set by `attach_resources` (juhe_sdk/resources.py); the same classes serve both clients.
    payments: Payments
    refunds: Resource
    webhook_deliveries: WebhookDeliveries
    webhook_endpoints: WebhookEndpoints
    events: Resource
    statements: Statements
    payouts: Resource
    wallet: Wallet
    accounts: Accounts
    transfers: Transfers
    platform: Platform
    settlement: Settlement
    routing: Routing
    cashier_merchants: CashierMerchants

    def __init__(
        self,
        base_url: str,
        *,
        key_id: str | None = None,
        secret: str | None = None,
        rsa_private_key_pem: str | bytes | None = None,
        token: str | None = None,
        on_behalf_of: str | None = None,
        timeout_seconds: float = 30.0,
        max_retries: int = 2,
        retry_backoff_seconds: float = 0.5,
        retry_after_max_seconds: float = 30.0,
    ) -> None:
        if (key_id is None) == (token is None):
            raise ValueError("pass key_id (+ secret or rsa_private_key_pem) for a merchant, or token for a bearer")
        self.base_url = base_url.rstrip("/")
        self.signer = Signer(key_id, secret, rsa_private_key_pem=rsa_private_key_pem) if key_id else None
        self.token = token
        self.on_behalf_of = on_behalf_of
        self.timeout_seconds = timeout_seconds
        self.max_retries = max_retries
        self.retry_backoff_seconds = retry_backoff_seconds
        self.retry_after_max_seconds = retry_after_max_seconds

    def _build(
        self,
        http: httpx.Client | httpx.AsyncClient,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        idempotency_key: str | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[httpx.Request, str | None]:
        method = method.upper()
        body = b"" if json is None else jsonlib.dumps(json, separators=(",", ":")).encode()
        out = {"Accept": "application/json", "User-Agent": f"juhe-sdk-python/{__version__}", **(headers or {})}
        if json is not None:
            out["Content-Type"] = "application/json"
        if method not in READ_METHODS:
            idempotency_key = idempotency_key or str(uuid.uuid4())
            out["Idempotency-Key"] = idempotency_key
        if self.on_behalf_of:
            out["Juhe-On-Behalf-Of"] = self.on_behalf_of
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        request = http.build_request(method, path, params=clean or None, content=body, headers=out)
        return request, idempotency_key

    def _authorize(self, request: httpx.Request) -> None:
        """Called before every attempt: a fresh timestamp and nonce each time."""
        if self.signer is not None:
            request.headers["Authorization"] = self.signer.authorization(
                request.method, request.url.raw_path.decode("ascii"), request.content
            )
        else:
            request.headers["Authorization"] = f"Bearer {self.token}"

    def _retry_delay(self, attempt: int, error: Exception) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up."""
        if attempt >= self.max_retries:
            return None
        if isinstance(error, APIError):
            retry = (
                error.status in RETRYABLE_STATUS
                or error.code == "idempotency_key_in_progress"
                or (error.status >= 500 and error.retryable)
            )
            if not retry:
                return None
            after = error.headers.get("retry-after")
            if after is not None:
                try:
                    return min(float(after), self.retry_after_max_seconds)
                except ValueError:
                    pass
        backoff: float = self.retry_backoff_seconds * (2**attempt)
        return backoff * (0.5 + random.random() / 2)

    @staticmethod
    def _result(response: httpx.Response) -> JuheResponse:
        headers = {k.lower(): v for k, v in response.headers.items()}
        data: Any = None
        if response.content:
            try:
                data = response.json()
            except ValueError:
                data = response.text
        if response.status_code >= 400:
            problem = data if isinstance(data, dict) else {"detail": str(data or response.reason_phrase)}
            raise error_for(response.status_code, problem, headers)
        return JuheResponse(response.status_code, headers, data)

    @staticmethod
    def _next_cursor(data: Any) -> str | None:
        if not isinstance(data, dict):
            return None
        if data.get("has_more") is False:
            return None
        cursor = data.get("next_cursor")
        return str(cursor) if cursor else None

    @staticmethod
    def _items(page: Any) -> list[Any]:
        """The items of one page: its `data` (every Juhe list answers `{"data", "has_more", "next_cursor"}`)."""
        if isinstance(page, dict) and isinstance(page.get("data"), list):
            return list(page["data"])
        return []


class Client(_Core):
    """Synchronous client. `Client(base_url, key_id=..., secret=...)` for a merchant; `token=` for a bearer."""

    def __init__(self, base_url: str, *, http_client: httpx.Client | None = None, **options: Any) -> None:
        super().__init__(base_url, **options)
        self._http = http_client or httpx.Client(base_url=self.base_url, timeout=self.timeout_seconds)
        attach_resources(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request_raw(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JuheResponse:
        request, _ = self._build(self._http, method, path, params, json, idempotency_key, headers)
        attempt = 0
        while True:
            self._authorize(request)
            try:
                return self._result(self._http.send(request))
            except APIError as exc:
                error: Exception = exc
            except httpx.TransportError as exc:
                error = exc
            delay = self._retry_delay(attempt, error)
            if delay is None:
                if isinstance(error, httpx.TransportError):
                    raise APIConnectionError(f"{method} {path}: {error!r}") from error
                raise error
            time.sleep(delay)
            attempt += 1

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request_raw(method, path, **kwargs).data

    def paginate(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        page_size: int = PAGE_SIZE_DEFAULT,
        cursor_param: str = "cursor",
    ) -> Iterator[Any]:
        """Every item of a cursor-paginated list (`{"data", "has_more", "next_cursor"}`), page by page."""
        query = {**(params or {}), "limit": page_size}
        for _ in range(PAGES_MAX):
            page = self.request("GET", path, params=query)
            yield from self._items(page)
            cursor = self._next_cursor(page)
            if cursor is None:
                return
            query[cursor_param] = cursor


class AsyncClient(_Core):
    """Asynchronous client, same API as `Client` with `await`/`async for`."""

    def __init__(self, base_url: str, *, http_client: httpx.AsyncClient | None = None, **options: Any) -> None:
        super().__init__(base_url, **options)
        self._http = http_client or httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout_seconds)
        attach_resources(self)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def request_raw(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JuheResponse:
        import asyncio

        request, _ = self._build(self._http, method, path, params, json, idempotency_key, headers)
        attempt = 0
        while True:
            self._authorize(request)
            try:
                return self._result(await self._http.send(request))
            except APIError as exc:
                error: Exception = exc
            except httpx.TransportError as exc:
                error = exc
            delay = self._retry_delay(attempt, error)
            if delay is None:
                if isinstance(error, httpx.TransportError):
                    raise APIConnectionError(f"{method} {path}: {error!r}") from error
                raise error
            await asyncio.sleep(delay)
            attempt += 1

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.request_raw(method, path, **kwargs)).data

    async def paginate(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        page_size: int = PAGE_SIZE_DEFAULT,
        cursor_param: str = "cursor",
    ) -> AsyncIterator[Any]:
        query = {**(params or {}), "limit": page_size}
        for _ in range(PAGES_MAX):
            page = await self.request("GET", path, params=query)
            for item in self._items(page):
                yield item
            cursor = self._next_cursor(page)
            if cursor is None:
                return
            query[cursor_param] = cursor


AsyncResource = Resource  # the same class serves both clients (kept for callers of the old name)
