"""End users of a platform and their short-lived tokens (`utk_…`, never cached)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.domain.access import Principal
from gateway.domain.credentials import hash_secret, new_secret
from gateway.domain.errors import MERCHANT_NOT_FOUND, USER_EXISTS, USER_NOT_FOUND
from gateway.flows.identities.base import IdentityBase
from gateway.store import credentials as store
from libs.common.errors import Problem
from libs.common.ids import new_id

USER_TOKEN_PREFIX = "utk"


class Users(IdentityBase):
    async def create_user(self, platform: Principal, *, name: str, user_id: str | None) -> dict[str, Any]:
        user_id = user_id or new_id("usr")
        async with self.uow.begin() as tx:
            if not await store.insert_user(tx.conn, user_id=user_id, platform_id=platform.platform_id, name=name):
                raise Problem(USER_EXISTS, f"user {user_id} already exists")
        return {"user_id": user_id, "name": name}

    async def issue_user_token(
        self, platform: Principal, user_id: str, *, ttl_seconds: int, merchant_id: str | None
    ) -> dict[str, Any]:
        token_id = new_id(USER_TOKEN_PREFIX)
        secret = new_secret("ut")
        expires_at = datetime.now(UTC) + timedelta(seconds=min(ttl_seconds, self.settings.user_token_ttl_seconds_max))
        async with self.uow.begin() as tx:
            if await store.get_user(tx.conn, user_id, platform_id=platform.platform_id) is None:
                raise Problem(USER_NOT_FOUND, f"user {user_id} does not exist")
            if merchant_id is not None and (
                await store.get_merchant(tx.conn, merchant_id, platform_id=platform.platform_id) is None
            ):
                raise Problem(MERCHANT_NOT_FOUND, f"merchant {merchant_id} does not exist")
            await store.insert_user_token(
                tx.conn,
                token_id=token_id,
                secret_hash=hash_secret(secret),
                user_id=user_id,
                platform_id=platform.platform_id,
                merchant_id=merchant_id,
                expires_at=expires_at,
            )
        return {"token": f"{token_id}.{secret}", "token_id": token_id, "user_id": user_id, "expires_at": expires_at}
