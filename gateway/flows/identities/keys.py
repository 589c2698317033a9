"""API keys: platform admin keys and merchant keys, their creation, rotation (with an overlap) and revocation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.domain import signing
from gateway.domain.access import Principal
from gateway.domain.credentials import hash_secret, new_key_id, new_secret
from gateway.domain.errors import API_KEY_NOT_FOUND, API_KEY_REVOKED, MERCHANT_NOT_FOUND
from gateway.flows.identities.base import IdentityBase
from gateway.store import credentials as store
from libs.common.errors import Problem
from libs.common.modes import Mode

MERCHANT_SECRET_PREFIX = "sk"
ADMIN_SECRET_PREFIX = "ak"


class Keys(IdentityBase):
    async def create_admin_key(self, *, platform_id: str, mode: Mode = "test") -> dict[str, Any]:
        """A platform admin key; its mode is the mode of what it does on a merchant's behalf (a wallet top-up
        made with a test admin key is a test payment)."""
        async with self.uow.begin() as tx:
            key = await self._insert_admin_key(tx.conn, platform_id, mode)
        return {**key, "platform_id": platform_id}

    async def _insert_admin_key(self, conn: Any, platform_id: str, mode: Mode) -> dict[str, Any]:
        key_id, secret = await self._insert_key(conn, "platform", platform_id, platform_id, mode)
        return {"key_id": key_id, "token": f"{key_id}.{secret}", "mode": mode}

    async def _insert_key(
        self,
        conn: Any,
        owner_kind: str,
        owner_id: str,
        platform_id: str,
        mode: Mode,
        rsa_public_key_pem: str | None = None,
    ) -> tuple[str, str]:
        """A new key's id and secret, both naming its mode (`key_test_…`, `sk_test_…` / `ak_test_…`). A merchant's
        secret is sealed (verifying an HMAC needs it), a platform bearer secret only hashed."""
        key_id = new_key_id(mode)
        prefix = MERCHANT_SECRET_PREFIX if owner_kind == "merchant" else ADMIN_SECRET_PREFIX
        secret = new_secret(f"{prefix}_{mode}")
        kept = (
            {"secret_sealed": self.sealer.seal(secret, row_id=key_id)}
            if owner_kind == "merchant"
            else {"secret_hash": hash_secret(secret)}
        )
        await store.insert_api_key(
            conn,
            key_id=key_id,
            owner_kind=owner_kind,
            owner_id=owner_id,
            platform_id=platform_id,
            rsa_public_key_pem=rsa_public_key_pem,
            mode=mode,
            **kept,
        )
        return key_id, secret

    async def _insert_merchant_key(
        self, conn: Any, merchant_id: str, platform_id: str, rsa_public_key_pem: str | None, mode: Mode
    ) -> dict[str, Any]:
        if rsa_public_key_pem is not None:
            signing.load_rsa_public_key(rsa_public_key_pem)
        key_id, secret = await self._insert_key(conn, "merchant", merchant_id, platform_id, mode, rsa_public_key_pem)
        return {"key_id": key_id, "secret": secret, "rsa": rsa_public_key_pem is not None, "mode": mode}

    async def create_merchant_key(
        self, platform: Principal, merchant_id: str, *, rsa_public_key_pem: str | None, mode: Mode = "test"
    ) -> dict[str, Any]:
        """Another key of the merchant; test and live keys may be active at once (docs/test-mode.md)."""
        async with self.uow.begin() as tx:
            if await store.get_merchant(tx.conn, merchant_id, platform_id=platform.platform_id) is None:
                raise Problem(MERCHANT_NOT_FOUND, f"merchant {merchant_id} does not exist")
            return await self._insert_merchant_key(tx.conn, merchant_id, platform.platform_id, rsa_public_key_pem, mode)

    async def rotate_key(
        self,
        platform: Principal,
        key_id: str,
        *,
        overlap_seconds: int,
        rsa_public_key_pem: str | None,
        mode: Mode | None = None,
    ) -> dict[str, Any]:
        """A new key for the same owner; the old one keeps working for `overlap_seconds`, then expires. The new
        key has the old one's mode unless `mode` says otherwise (a key pre-dating modes is live)."""
        async with self.uow.begin() as tx:
            old = await store.get_api_key(tx.conn, key_id)
            if old is None or old["platform_id"] != platform.platform_id:
                raise Problem(API_KEY_NOT_FOUND, f"key {key_id} does not exist")
            if old["status"] != "active":
                raise Problem(API_KEY_REVOKED, f"key {key_id} was revoked; create a new key instead")
            new_mode: Mode = mode or old["mode"]
            if old["owner_kind"] == "merchant":
                pem = rsa_public_key_pem if rsa_public_key_pem is not None else old["rsa_public_key_pem"]
                new = await self._insert_merchant_key(tx.conn, old["owner_id"], platform.platform_id, pem, new_mode)
            else:
                new = await self._insert_admin_key(tx.conn, old["owner_id"], new_mode)
            retired = await store.retire_api_key(
                tx.conn,
                key_id=key_id,
                platform_id=platform.platform_id,
                expires_at=datetime.now(UTC) + timedelta(seconds=overlap_seconds),
                replaced_by=new["key_id"],
            )
            assert retired is not None
        return {"new_key": new, "old_key": key_view(retired)}

    async def revoke_key(self, platform: Principal, key_id: str) -> dict[str, Any]:
        async with self.uow.begin() as tx:
            row = await store.revoke_api_key(tx.conn, key_id=key_id, platform_id=platform.platform_id)
        if row is None:
            raise Problem(API_KEY_NOT_FOUND, f"key {key_id} does not exist")
        return key_view(row)


def key_view(row: Any) -> dict[str, Any]:
    return {
        "key_id": row["key_id"],
        "owner_kind": row["owner_kind"],
        "owner_id": row["owner_id"],
        "status": row["status"],
        "mode": row["mode"],
        "rsa": row["rsa_public_key_pem"] is not None,
        "expires_at": row["expires_at"],
        "revoked_at": row["revoked_at"],
        "replaced_by": row["replaced_by"],
        "created_at": row["created_at"],
    }
