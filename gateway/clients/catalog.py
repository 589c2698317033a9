"""The public API catalogue: fetches each service's OpenAPI document and keeps the merged result.

Fetched in the background from start-up on and every `openapi_refresh_seconds` (sooner while a service is
missing), by every API replica on its own: the document is derived data, cheap to rebuild, so it needs no
shared state. A service that cannot be reached keeps its last good document; one never reached is listed in
`x-juhe-unavailable-services` until it answers.

The start-up does not wait for the first fetch: it makes every service build its OpenAPI document (~0.25 CPU-s
each) while the platform is starting, so the gateway would be ready only after all of them. `/openapi.json`
waits for that first pass instead (`first_pass`), so it answers the same document once the services are up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx

from gateway.config import Settings
from gateway.domain.errors import PUBLIC_ERRORS
from gateway.domain.openapi_doc import assemble
from libs.common.logging import get_logger

log = get_logger("juhe.gateway.clients.catalog")
MISSING_RETRY_SECONDS = 2.0


class ApiCatalog:
    def __init__(
        self,
        settings: Settings,
        clients: dict[str, httpx.AsyncClient],
        own_document: Callable[[], dict[str, Any]],
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.own_document = own_document
        self.documents: dict[str, dict[str, Any]] = {}
        self._merged: dict[str, Any] | None = None
        self._first_pass_done = asyncio.Event()

    def document(self) -> dict[str, Any]:
        if self._merged is None:
            self._merged = self._assemble()
        return self._merged

    def _assemble(self) -> dict[str, Any]:
        served = set(self.settings.routes.values())
        return assemble(
            {**self.documents, "gateway": self.own_document()},
            routes=self.settings.routes,
            internal_prefixes=self.settings.internal_prefixes,
            platform_only_prefixes=self.settings.platform_only_prefixes,
            user_prefixes=self.settings.user_prefixes,
            errors=PUBLIC_ERRORS,
            unavailable=sorted(served - set(self.documents)),
        )

    async def first_pass(self) -> None:
        """Return once the first refresh has finished (whatever it fetched), or after twice the fetch timeout:
        a reader then gets what is known, with the services not yet fetched listed as unavailable."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_pass_done.wait(), 2 * self.settings.openapi_fetch_timeout_seconds)

    async def refresh(self) -> None:
        try:
            await self._refresh()
        finally:
            self._first_pass_done.set()

    async def _refresh(self) -> None:
        services = sorted(set(self.settings.routes.values()) & set(self.clients))
        results = await asyncio.gather(*(self._fetch(name) for name in services))
        changed = self._merged is None
        for name, doc in zip(services, results, strict=True):
            if doc is not None and doc != self.documents.get(name):
                self.documents[name] = doc
                changed = True
        if changed:  # assembling is CPU work the proxy's requests would wait behind
            self._merged = self._assemble()

    async def _fetch(self, service: str) -> dict[str, Any] | None:
        try:
            response = await self.clients[service].get(
                "/openapi.json", timeout=self.settings.openapi_fetch_timeout_seconds
            )
            response.raise_for_status()
            doc = response.json()
            return doc if isinstance(doc, dict) else None
        except (httpx.HTTPError, ValueError) as exc:
            log.info("openapi fetch failed", service=service, error=repr(exc)[:200])
            return None

    async def run(self) -> None:
        """Refresh forever; a missing service is retried every few seconds."""
        while True:
            with contextlib.suppress(Exception):
                await self.refresh()
            missing = set(self.settings.routes.values()) - set(self.documents)
            await asyncio.sleep(
                min(MISSING_RETRY_SECONDS, self.settings.openapi_refresh_seconds)
                if missing
                else self.settings.openapi_refresh_seconds
            )
