"""What every resource of the gateway's identities shares: its settings, unit of work, credential sealer and
the per-replica caches of key material, merchants of a platform and pinned API versions.

Key material (opened HMAC secrets, RSA public keys) is cached per replica for `key_cache_ttl_seconds`;
whether the key is still active is not trusted from the cache: the per-request guard statement
(`store/guards.py: admit`) checks status and expiry in the database, so a revocation or a rotation's end takes
effect at once on every replica. Everything else (nonces, rate windows, idempotency) is decided in PostgreSQL
too, so replicas agree.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Settings
from gateway.domain.credentials import CredentialSealer
from libs.common.db import UnitOfWork
from libs.common.modes import Mode

CACHE_ENTRIES_MAX = 10_000


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    owner_kind: str
    owner_id: str
    platform_id: str
    status: str
    expires_at_epoch: float | None
    secret: str | None  # merchant HMAC secret, opened from its seal
    secret_hash: bytes | None  # platform bearer keys
    rsa_public_key: rsa.RSAPublicKey | None
    mode: Mode = "test"


class _TtlCache:
    """Per-replica cache; a TTL of 0 disables it. Bounded: cleared when full (simple, and rare)."""

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._items: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any:
        item = self._items.get(key)
        if item is None or item[0] < self._clock():
            return None
        return item[1]

    def forget(self, key: str) -> None:
        self._items.pop(key, None)

    def put(self, key: str, value: Any) -> None:
        if self.ttl_seconds <= 0:
            return
        if len(self._items) >= CACHE_ENTRIES_MAX:
            self._items.clear()
        self._items[key] = (self._clock() + self.ttl_seconds, value)


T = TypeVar("T")


class _SharedLookups(Generic[T]):
    """Concurrent cache misses of one key share one lookup. Without it a burst of requests of one merchant arriving
    while its entry is expired (every `key_cache_ttl_seconds`) ran one read each, and the reads beyond the pool's
    idle connections opened new ones, each a PostgreSQL backend forked and set up (~7 ms of CPU in all) and closed
    again after it (docs/performance.md, "Fifth pass"). A waiter that is cancelled leaves the lookup running for
    the others (`shield`)."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[T]] = {}

    async def run(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        lookup = self._running.get(key)
        if lookup is None:
            lookup = asyncio.ensure_future(load())
            self._running[key] = lookup
            lookup.add_done_callback(lambda done: self._done(key, done))
        return await asyncio.shield(lookup)

    def _done(self, key: str, done: asyncio.Future[T]) -> None:
        if self._running.get(key) is done:
            del self._running[key]


class IdentityBase:
    """The state the resource mixins of `Identities` (authentication, keys, merchants, users) share."""

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.settings = settings
        self.uow = UnitOfWork(engine, source=settings.service_name)
        self.sealer = CredentialSealer.from_settings(
            settings.credentials_encryption_key,
            key_id=settings.credentials_encryption_key_id,
            retired=settings.credentials_retired_keys,
        )
        self._keys = _TtlCache(settings.key_cache_ttl_seconds)
        self._merchants = _TtlCache(settings.key_cache_ttl_seconds)
        self._versions = _TtlCache(settings.key_cache_ttl_seconds)
        self._key_lookups: _SharedLookups[KeyRecord | None] = _SharedLookups()
        self._version_lookups: _SharedLookups[str | None] = _SharedLookups()
