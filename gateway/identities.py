"""Identities: authenticating callers, and the platform's operations on merchants, keys and users.

`Identities` is the one object routes talk to. Key material (opened HMAC secrets, RSA public keys) is
cached per replica for `key_cache_ttl_seconds`; whether the key is still active is not trusted from the
cache: the per-request guard statement (`store/guards.py: admit`) checks status and expiry in the
database, so a revocation or a rotation's end takes effect at once on every replica. Everything else
(nonces, rate windows, idempotency) is decided in PostgreSQL too, so replicas agree.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Settings
from gateway.domain import signing
from gateway.domain import staff as staff_rules
from gateway.domain.access import Principal
from gateway.domain.credentials import CredentialSealer, hash_secret, new_key_id, new_secret, secret_matches
from gateway.domain.errors import (
    API_KEY_EXPIRED,
    API_KEY_INVALID,
    API_KEY_NOT_FOUND,
    API_KEY_REVOKED,
    AUTHENTICATION_REQUIRED,
    AUTHORIZATION_MALFORMED,
    MERCHANT_EXISTS,
    MERCHANT_NOT_FOUND,
    ROUTE_FORBIDDEN,
    TOKEN_INVALID,
    USER_EXISTS,
    USER_NOT_FOUND,
)
from gateway.store import api_versions as version_store
from gateway.store import credentials as store
from gateway.store import staff as staff_store
from libs.common.db import UnitOfWork
from libs.common.errors import Problem
from libs.common.ids import new_id
from libs.common.modes import Mode

ON_BEHALF_HEADER = "Juhe-On-Behalf-Of"
CACHE_ENTRIES_MAX = 10_000
MERCHANT_SECRET_PREFIX = "sk"
ADMIN_SECRET_PREFIX = "ak"
WEBHOOK_SECRET_PREFIX = "whsec"
USER_TOKEN_PREFIX = "utk"
STAFF_SESSION_PREFIX = "cst"  # console sessions of staff members (gateway/staff.py)


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


class Identities:
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
        self._key_lookups: dict[str, asyncio.Future[KeyRecord | None]] = {}

    # ---- authentication -------------------------------------------------------------------------

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
        return Principal(kind, session_id, row["platform_id"], merchant_id=row["merchant_id"], staff_id=row["staff_id"],
                         permissions=permissions)  # fmt: skip

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
        lookup = self._key_lookups.get(key_id)
        if lookup is None:
            lookup = asyncio.ensure_future(self._load_key(key_id))
            self._key_lookups[key_id] = lookup
            lookup.add_done_callback(functools.partial(self._lookup_done, key_id))
        return await asyncio.shield(lookup)

    def _lookup_done(self, key_id: str, _done: asyncio.Future[KeyRecord | None]) -> None:
        self._key_lookups.pop(key_id, None)

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

    # ---- platform operations --------------------------------------------------------------------

    async def create_platform(self, *, platform_id: str, name: str) -> dict[str, Any]:
        """A platform and its first admin key (used by the seed; platforms are few and made by operators)."""
        async with self.uow.begin() as tx:
            await store.ensure_platform(tx.conn, platform_id=platform_id, name=name)
        return await self.create_admin_key(platform_id=platform_id)

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

    async def _insert_merchant_key(
        self, conn: Any, merchant_id: str, platform_id: str, rsa_public_key_pem: str | None, mode: Mode
    ) -> dict[str, Any]:
        if rsa_public_key_pem is not None:
            signing.load_rsa_public_key(rsa_public_key_pem)
        key_id, secret = await self._insert_key(conn, "merchant", merchant_id, platform_id, mode, rsa_public_key_pem)
        return {"key_id": key_id, "secret": secret, "rsa": rsa_public_key_pem is not None, "mode": mode}

    async def pinned_version(self, merchant_id: str) -> str | None:
        """The merchant's pinned API version (None: the latest), cached per replica like key material: a new
        pin is seen by every replica within `key_cache_ttl_seconds`."""
        cached = self._versions.get(merchant_id)
        if cached is not None:
            return str(cached) or None
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
            "keys": [_key_view(k) for k in keys],
        }

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
        return {"new_key": new, "old_key": _key_view(retired)}

    async def revoke_key(self, platform: Principal, key_id: str) -> dict[str, Any]:
        async with self.uow.begin() as tx:
            row = await store.revoke_api_key(tx.conn, key_id=key_id, platform_id=platform.platform_id)
        if row is None:
            raise Problem(API_KEY_NOT_FOUND, f"key {key_id} does not exist")
        return _key_view(row)

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

    async def webhook_secret(self, merchant_id: str) -> str:
        async with self.uow.read() as conn:
            row = await store.get_merchant(conn, merchant_id)
        if row is None:
            raise Problem(MERCHANT_NOT_FOUND, f"merchant {merchant_id} does not exist")
        return self.sealer.open(row["webhook_secret_sealed"], row_id=merchant_id)


def _key_view(row: Any) -> dict[str, Any]:
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
