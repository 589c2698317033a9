"""My Wallet's users at the gateway: one-time sign-in links, the web sessions they open, payment PINs.

Why here: the gateway owns users and their credentials (tokens); a sign-in link is a credential that
becomes a user token, and a payment PIN is a second factor of the same user, checked before wallet money
moves (My Wallet now, the checkout's wallet payments next). Keeping both here needs no change to the
ledger and no PIN ever reaches a service that does not need it. docs/web.md explains the flow.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.config import Settings
from gateway.domain import pins
from gateway.domain.access import Principal
from gateway.domain.credentials import bearer_matches, hash_secret, secret_matches
from gateway.domain.errors import (
    PAYMENT_PIN_ALREADY_SET,
    PAYMENT_PIN_INCORRECT,
    PAYMENT_PIN_LOCKED,
    PAYMENT_PIN_NOT_SET,
    PAYMENT_PIN_TOO_SIMPLE,
    SIGN_IN_LINK_INVALID,
    USER_NOT_FOUND,
    WEB_CLIENT_INVALID,
)
from gateway.flows.identities import Identities
from gateway.store import credentials as identity_store
from gateway.store import wallet_users as store
from libs.common.errors import Problem
from libs.common.ids import new_id

SIGN_IN_LINK_PREFIX = "wsl"
SIGN_IN_PATH = "/wallet/sign-in"
LINK_SECRET_BYTES = 32  # 256 bits


class WalletUsers:
    def __init__(self, identities: Identities, settings: Settings) -> None:
        self.identities = identities
        self.settings = settings
        self.uow = identities.uow
        self._web_client_hash = hash_secret(settings.web_client_token.get_secret_value())

    def check_web_client(self, authorization: str | None) -> None:
        """The web process's first-party token (`Authorization: Bearer <web_client_token>`), compared in
        constant time; anyone else gets 401 and nothing is looked up."""
        if not bearer_matches(authorization, self._web_client_hash):
            raise Problem(WEB_CLIENT_INVALID, "only Juhe's web process may redeem sign-in links")

    # ---- sign-in links ----------------------------------------------------------------------------

    async def mint_sign_in_link(self, platform: Principal, user_id: str) -> dict[str, Any]:
        link_id = new_id(SIGN_IN_LINK_PREFIX)
        secret = secrets.token_urlsafe(LINK_SECRET_BYTES)
        expires_at = datetime.now(UTC) + timedelta(seconds=self.settings.wallet_sign_in_link_seconds)
        async with self.uow.begin() as tx:
            if await identity_store.get_user(tx.conn, user_id, platform_id=platform.platform_id) is None:
                raise Problem(USER_NOT_FOUND, f"user {user_id} does not exist")
            await store.insert_sign_in_link(
                tx.conn,
                link_id=link_id,
                secret_hash=hash_secret(secret),
                user_id=user_id,
                platform_id=platform.platform_id,
                expires_at=expires_at,
            )
        url = f"{self.settings.public_base_url.rstrip('/')}{SIGN_IN_PATH}?token={link_id}.{secret}"
        return {"url": url, "expires_at": expires_at, "user_id": user_id}

    async def redeem_sign_in_link(self, token: str) -> dict[str, Any]:
        """The link's secret checked, then used once (compare-and-set on `used_at`, database clock), then a
        user token for the web session. Unknown, tampered, expired and used links all answer the same 401."""
        link_id, sep, secret = token.partition(".")
        if not sep or not link_id.startswith(f"{SIGN_IN_LINK_PREFIX}_"):
            raise Problem(SIGN_IN_LINK_INVALID, "not a sign-in link")
        async with self.uow.begin() as tx:
            row = await store.get_sign_in_link(tx.conn, link_id)
            if row is None or not secret_matches(secret, row["secret_hash"]):
                raise Problem(SIGN_IN_LINK_INVALID, "unknown sign-in link")
            used = await store.use_sign_in_link(tx.conn, link_id)
        if used is None:
            raise Problem(SIGN_IN_LINK_INVALID, "this sign-in link expired or was already used")
        platform = Principal("platform", "web", used["platform_id"])
        return await self.identities.issue_user_token(
            platform, used["user_id"], ttl_seconds=self.settings.wallet_session_seconds, merchant_id=None
        )

    async def sign_out(self, user: Principal) -> None:
        async with self.uow.begin() as tx:
            await store.revoke_user_token(tx.conn, user.key_id)

    # ---- payment PINs -----------------------------------------------------------------------------

    async def pin_status(self, user: Principal) -> dict[str, Any]:
        async with self.uow.read() as conn:
            row = await store.get_pin(conn, _user_id(user))
        if row is None:
            return {"set": False, "locked": False, "tries_left": pins.PIN_TRIES_MAX, "locked_until": None}
        state = pins.PinState(row["failed_count"], row["locked_until"])
        locked = state.locked(datetime.now(UTC))
        return {
            "set": True,
            "locked": locked,
            "tries_left": 0 if locked else state.tries_left,
            "locked_until": row["locked_until"] if locked else None,
        }

    async def set_pin(self, user: Principal, *, pin: str, current_pin: str | None) -> dict[str, Any]:
        """First set (no PIN yet, no `current_pin`) or change (the current PIN checked like any try)."""
        if pins.is_too_simple(pin):
            raise Problem(PAYMENT_PIN_TOO_SIMPLE, "the PIN is one digit repeated or a run of digits")
        new_hash = await asyncio.to_thread(pins.hash_pin, pin)
        user_id = _user_id(user)
        if current_pin is None:
            async with self.uow.begin() as tx:
                if not await store.insert_pin(
                    tx.conn, user_id=user_id, platform_id=user.platform_id, pin_hash=new_hash
                ):
                    raise Problem(PAYMENT_PIN_ALREADY_SET, "a PIN is set: send current_pin to change it")
            return await self.pin_status(user)
        await self._check(user_id, current_pin, new_hash=new_hash)
        return await self.pin_status(user)

    async def verify_pin(self, user: Principal, pin: str) -> dict[str, Any]:
        await self._check(_user_id(user), pin, new_hash=None)
        return {"verified": True}

    async def _check(self, user_id: str, pin: str, *, new_hash: str | None) -> None:
        """One try, counted under the row lock so concurrent wrong tries never exceed the limit. A wrong try's
        count is committed before the 403 is raised; a right one resets it (and stores `new_hash`, if any)."""
        now = datetime.now(UTC)
        problem: Problem | None = None
        async with self.uow.begin() as tx:
            row = await store.lock_pin(tx.conn, user_id)
            if row is None:
                raise Problem(PAYMENT_PIN_NOT_SET, "set a payment PIN in My Wallet first")
            state = pins.PinState(row["failed_count"], row["locked_until"])
            if state.locked(now):
                raise Problem(PAYMENT_PIN_LOCKED, "too many wrong PINs", locked_until=row["locked_until"].isoformat())
            if await asyncio.to_thread(pins.pin_matches, pin, row["pin_hash"]):
                await store.record_pin_tries(
                    tx.conn, user_id=user_id, failed_count=0, locked_until=None, pin_hash=new_hash
                )
                return
            after = state.after_failure(now, self.settings.payment_pin_lockout_seconds)
            await store.record_pin_tries(
                tx.conn, user_id=user_id, failed_count=after.failed_count, locked_until=after.locked_until
            )
            if after.locked_until is not None:
                until = after.locked_until.isoformat()
                problem = Problem(PAYMENT_PIN_LOCKED, "too many wrong PINs", locked_until=until)
            else:
                problem = Problem(PAYMENT_PIN_INCORRECT, "wrong PIN", tries_left=after.tries_left)
        raise problem


def _user_id(user: Principal) -> str:
    assert user.kind == "user" and user.user_id is not None
    return user.user_id
