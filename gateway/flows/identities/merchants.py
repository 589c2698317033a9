"""Platforms and merchants: a merchant with its webhook secret and first key, its pinned API version."""

from __future__ import annotations

import functools
from typing import Any

from gateway.domain.access import Principal
from gateway.domain.credentials import new_secret
from gateway.domain.errors import MERCHANT_EXISTS, MERCHANT_NOT_FOUND
from gateway.flows.identities.keys import Keys, key_view
from gateway.store import api_versions as version_store
from gateway.store import credentials as store
from libs.common.errors import Problem
from libs.common.ids import new_id
from libs.common.modes import Mode

WEBHOOK_SECRET_PREFIX = "whsec"


class Merchants(Keys):
    async def create_platform(self, *, platform_id: str, name: str) -> dict[str, Any]:
        """A platform and its first admin key (used by the seed; platforms are few and made by operators)."""
        async with self.uow.begin() as tx:
            await store.ensure_platform(tx.conn, platform_id=platform_id, name=name)
        return await self.create_admin_key(platform_id=platform_id)

    async def create_merchant(
        self,
        platform: Principal,
        *,
        name: str,
        merchant_id: str | None,
        rsa_public_key_pem: str | None,
        key_mode: Mode = "test",
    ) -> dict[str, Any]:
        """The merchant, its webhook secret and its first API key (test by default: a new merchant integrates
        against the sandboxes first and is given a live key when it goes live)."""
        merchant_id = merchant_id or new_id("mch")
        webhook_secret = new_secret(WEBHOOK_SECRET_PREFIX)
        async with self.uow.begin() as tx:
            created = await store.insert_merchant(
                tx.conn,
                merchant_id=merchant_id,
                platform_id=platform.platform_id,
                name=name,
                webhook_secret_sealed=self.sealer.seal(webhook_secret, row_id=merchant_id),
            )
            if not created:
                raise Problem(MERCHANT_EXISTS, f"merchant {merchant_id} already exists")
            key = await self._insert_merchant_key(
                tx.conn, merchant_id, platform.platform_id, rsa_public_key_pem, key_mode
            )
        return {"merchant_id": merchant_id, "name": name, "api_key": key, "webhook_secret": webhook_secret}

    async def pinned_version(self, merchant_id: str) -> str | None:
        """The merchant's pinned API version (None: the latest), cached per replica like key material: a new
        pin is seen by every replica within `key_cache_ttl_seconds`; concurrent misses share one read."""
        cached = self._versions.get(merchant_id)
        if cached is not None:
            return str(cached) or None
        return await self._version_lookups.run(merchant_id, functools.partial(self._load_pinned_version, merchant_id))

    async def _load_pinned_version(self, merchant_id: str) -> str | None:
        async with self.uow.read() as conn:
            pinned = await version_store.pinned_version(conn, merchant_id)
        self._versions.put(merchant_id, pinned or "")
        return pinned

    async def pin_version(self, platform: Principal, merchant_id: str, api_version: str) -> None:
        async with self.uow.begin() as tx:
            if not await version_store.pin_version(
                tx.conn, merchant_id, platform_id=platform.platform_id, api_version=api_version
            ):
                raise Problem(MERCHANT_NOT_FOUND, f"merchant {merchant_id} does not exist")
        self._versions.forget(merchant_id)

    async def merchant(self, platform: Principal, merchant_id: str) -> dict[str, Any]:
        async with self.uow.read() as conn:
            row = await store.get_merchant(conn, merchant_id, platform_id=platform.platform_id)
            if row is None:
                raise Problem(MERCHANT_NOT_FOUND, f"merchant {merchant_id} does not exist")
            keys = await store.list_api_keys(conn, owner_kind="merchant", owner_id=merchant_id)
        return {
            "merchant_id": row["id"],
            "name": row["name"],
            "status": row["status"],
            "created_at": row["created_at"],
            "keys": [key_view(k) for k in keys],
        }

    async def webhook_secret(self, merchant_id: str) -> str:
        async with self.uow.read() as conn:
            row = await store.get_merchant(conn, merchant_id)
        if row is None:
            raise Problem(MERCHANT_NOT_FOUND, f"merchant {merchant_id} does not exist")
        return self.sealer.open(row["webhook_secret_sealed"], row_id=merchant_id)
