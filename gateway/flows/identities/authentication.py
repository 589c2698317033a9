"""Authenticating callers: signed merchant requests, platform bearer keys, user tokens and console sessions.

Key material is cached per replica (`base.py`); whether a key is still usable is checked again by the guard
statement on every request (`refuse_stale_key` answers its refusal).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from gateway.domain import signing
from gateway.domain import staff as staff_rules
from gateway.domain.access import Principal
from gateway.domain.credentials import hash_secret, secret_matches
from gateway.domain.errors import (
    API_KEY_EXPIRED,
    API_KEY_INVALID,
    API_KEY_REVOKED,
    AUTHENTICATION_REQUIRED,
    AUTHORIZATION_MALFORMED,
    ROUTE_FORBIDDEN,
    TOKEN_INVALID,
)
from gateway.flows.identities.base import IdentityBase, KeyRecord
from gateway.flows.identities.users import USER_TOKEN_PREFIX
from gateway.store import credentials as store
from gateway.store import staff as staff_store
from libs.common.errors import Problem

ON_BEHALF_HEADER = "Juhe-On-Behalf-Of"
STAFF_SESSION_PREFIX = "cst"  # console sessions of staff members (gateway/flows/staff.py)


@dataclass(frozen=True, slots=True)
class SignedNonce:
    """A verified signed request's nonce, to be claimed (once, across replicas) by the caller."""

    key_id: str
    nonce: str
    expires_epoch: int


@dataclass(frozen=True, slots=True)
class Authenticated:
    principal: Principal
    nonce: SignedNonce | None


def _usable(key: KeyRecord | None, key_id: str, now: float) -> KeyRecord:
    if key is None:
        raise Problem(API_KEY_INVALID, "unknown API key")
    if key.status == "revoked":
        raise Problem(API_KEY_REVOKED, f"key {key_id} was revoked")
    if key.expires_at_epoch is not None and key.expires_at_epoch <= now:
        raise Problem(API_KEY_EXPIRED, f"key {key_id} expired after rotation")
    return key


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class Authentication(IdentityBase):
    """Who is calling: the principal of a request, from its signature or its bearer token."""

    async def authenticate(
        self, *, method: str, path_and_query: str, headers: Mapping[str, str], body: bytes
    ) -> Authenticated:
        header = headers.get("authorization")
        if not header:
            raise Problem(AUTHENTICATION_REQUIRED, "sign the request (JUHE-HMAC-SHA256 …) or send a Bearer token")
        scheme = header.split(" ", 1)[0]
        if scheme in signing.ALGORITHMS:
            return await self._authenticate_signed(header, method, path_and_query, body)
        if scheme.lower() == "bearer":
            principal = await self._authenticate_bearer(header[len(scheme) :].strip())
            on_behalf = headers.get(ON_BEHALF_HEADER.lower())
            if on_behalf and principal.kind == "platform":
                await self._merchant_of_platform(on_behalf, principal.platform_id)
                principal = Principal(
                    "platform", principal.key_id, principal.platform_id, merchant_id=on_behalf, mode=principal.mode
                )
            return Authenticated(principal, None)
        raise Problem(AUTHORIZATION_MALFORMED, "unknown Authorization scheme")

    async def _authenticate_signed(self, header: str, method: str, path_and_query: str, body: bytes) -> Authenticated:
        auth = signing.parse_authorization(header)
        now = time.time()
        signing.check_timestamp(auth.timestamp, now=now, window_seconds=self.settings.signature_window_seconds)
        key = await self._usable_key(auth.key_id, now)
        if key.owner_kind != "merchant":
            raise Problem(AUTHORIZATION_MALFORMED, "platform keys authenticate with Authorization: Bearer")
        message = signing.string_to_sign(
            algorithm=auth.algorithm,
            key_id=auth.key_id,
            method=method,
            path_and_query=path_and_query,
            timestamp=auth.timestamp,
            nonce=auth.nonce,
            body=body,
        )
        if auth.algorithm == signing.HMAC_ALGORITHM:
            assert key.secret is not None
            signing.verify_hmac(key.secret, message, auth.signature)
        else:
            if key.rsa_public_key is None:
                raise Problem(AUTHORIZATION_MALFORMED, "no RSA public key was uploaded for this key id")
            signing.verify_rsa(key.rsa_public_key, message, auth.signature)
        # The nonce must be remembered as long as its timestamp could still be accepted.
        expires = auth.timestamp + self.settings.signature_window_seconds + 1
        principal = Principal("merchant", key.key_id, key.platform_id, merchant_id=key.owner_id, mode=key.mode)
        return Authenticated(principal, SignedNonce(key.key_id, auth.nonce, expires))

    async def _authenticate_bearer(self, token: str) -> Principal:
        token_id, sep, secret = token.partition(".")
        if not sep or not secret:
            raise Problem(TOKEN_INVALID, "expected Bearer <id>.<secret>")
        if token_id.startswith(f"{USER_TOKEN_PREFIX}_"):
            return await self._user_principal(token_id, secret)
        if token_id.startswith(f"{STAFF_SESSION_PREFIX}_"):
            return await self._staff_principal(token_id, secret)
        if not signing.KEY_ID_RE.match(token_id):
            raise Problem(TOKEN_INVALID, "unknown token")
        try:
            key = await self._usable_key(token_id, time.time())
        except Problem as exc:
            if exc.spec is API_KEY_INVALID:
                raise Problem(TOKEN_INVALID, exc.detail) from None
            raise
        if key.owner_kind != "platform":
            raise Problem(AUTHORIZATION_MALFORMED, "merchant keys must sign requests (JUHE-HMAC-SHA256 …)")
        if key.secret_hash is None or not secret_matches(secret, key.secret_hash):
            raise Problem(TOKEN_INVALID, "unknown token")
        return Principal("platform", key.key_id, key.platform_id, mode=key.mode)

    async def _user_principal(self, token_id: str, secret: str) -> Principal:
        async with self.uow.read() as conn:
            row = await store.get_user_token(conn, token_id)
        if (
            row is None
            or row["revoked_at"] is not None
            or row["expires_at"].timestamp() < time.time()
            or not secret_matches(secret, row["secret_hash"])
        ):
            raise Problem(TOKEN_INVALID, "unknown, expired or revoked user token")
        return Principal("user", token_id, row["platform_id"], merchant_id=row["merchant_id"], user_id=row["user_id"])

    async def _staff_principal(self, session_id: str, secret: str) -> Principal:
        """A live console session, its idle deadline moved on, with its member's role as of now (one statement).
        Merchant staff act as their merchant, operators as the platform; both only within their permissions."""
        async with self.uow.begin() as tx:
            row = await staff_store.touch_session(
                tx.conn,
                session_id,
                secret_hash=hash_secret(secret),
                idle_seconds=self.settings.staff_session_idle_seconds,
            )
        if row is None:
            raise Problem(TOKEN_INVALID, "unknown, expired or revoked console session")
        permissions = staff_rules.permissions_of(row["kind"], row["role"])
        kind: Literal["merchant", "platform"] = "merchant" if row["kind"] == "merchant" else "platform"
        return Principal(
            kind,
            session_id,
            row["platform_id"],
            merchant_id=row["merchant_id"],
            staff_id=row["staff_id"],
            permissions=permissions,
        )

    async def _usable_key(self, key_id: str, now: float) -> KeyRecord:
        return _usable(await self.key(key_id), key_id, now)

    async def refuse_stale_key(self, key_id: str) -> None:
        """The guard statement found `key_id` revoked or expired: drop the cached copy and raise its 401."""
        self._keys.forget(key_id)
        _usable(await self._load_key(key_id), key_id, time.time())
        raise Problem(API_KEY_REVOKED, f"key {key_id} is no longer active")

    async def key(self, key_id: str) -> KeyRecord | None:
        """The key, from this replica's cache or the database; concurrent misses share one lookup."""
        cached: KeyRecord | None = self._keys.get(key_id)
        if cached is not None:
            return cached
        return await self._key_lookups.run(key_id, functools.partial(self._load_key, key_id))

    async def _load_key(self, key_id: str) -> KeyRecord | None:
        async with self.uow.read() as conn:
            row = await store.get_api_key(conn, key_id)
            merchant = (
                await store.get_merchant(conn, row["owner_id"])
                if row is not None and row["owner_kind"] == "merchant"
                else None
            )
        if row is None:
            return None
        status = row["status"]
        if merchant is not None and merchant["status"] != "active":
            status = "revoked"
        record = KeyRecord(
            key_id=row["key_id"],
            owner_kind=row["owner_kind"],
            owner_id=row["owner_id"],
            platform_id=row["platform_id"],
            status=status,
            expires_at_epoch=_epoch(row["expires_at"]),
            secret=self.sealer.open(row["secret_sealed"], row_id=key_id) if row["secret_sealed"] else None,
            secret_hash=row["secret_hash"],
            rsa_public_key=signing.load_rsa_public_key(row["rsa_public_key_pem"])
            if row["rsa_public_key_pem"]
            else None,
            mode=row["mode"],
        )
        if merchant is None or merchant["status"] == "active":
            # A key refused only because its merchant is not active yet (an onboarding midway) is not cached: it
            # works on every replica the moment the onboarding activates the merchant (docs/onboarding.md).
            self._keys.put(key_id, record)
        return record

    async def _merchant_of_platform(self, merchant_id: str, platform_id: str) -> None:
        cache_key = f"{platform_id}/{merchant_id}"
        if self._merchants.get(cache_key):
            return
        async with self.uow.read() as conn:
            row = await store.get_merchant(conn, merchant_id, platform_id=platform_id)
        if row is None:
            raise Problem(ROUTE_FORBIDDEN, f"{merchant_id} is not a merchant of this platform")
        self._merchants.put(cache_key, True)
