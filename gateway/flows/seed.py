"""Demo identities for `make run`: a platform, merchant `mch_demo`, a demo user, and their keys.

    seed_demo(database_url: str, keys_path: str | Path = ".juhe/demo-keys.json",
              *, settings: Settings | None = None, merchant: bool = True) -> dict[str, Any]
    await seed_demo_async(...)  # same, from async code
    save_keys(keys_path, keys)  # rewrite the keys file (0600), e.g. with the onboarded merchant's keys added

The gateway database must already be migrated. `settings` must carry the same
`credentials_encryption_key` as the running gateway (default: `Settings()`, i.e. JUHE_GATEWAY_* env).

Idempotent: the first run creates everything and writes the plaintext keys to `keys_path` (mode 0600);
the database holds only hashes and AES-GCM-sealed secrets. Later runs read the same keys back from the
file, after checking they still work (the short-lived user token is re-issued when under 10 min are left);
if the file is gone or its keys were revoked, the demo keys are
re-issued (old ones revoked) and the file rewritten. The demo keys are test keys (docs/test-mode.md): the demo
reaches only the sandboxes; keys of an earlier run made before modes existed (live since the migration) are
re-issued as test keys. Returns:

    {"platform_id", "admin_key", "merchant_id", "key_id", "secret", "webhook_secret",
     "user_id", "user_token", "user_token_expires_at", "created": bool}

`merchant=False` (the launcher: it onboards `mch_demo` through the one onboarding call, docs/onboarding.md) makes
and checks only the platform, its admin key and the user; whatever merchant fields the file holds are returned
as they are (the launcher's onboarding replay answers them again and rewrites them with `save_keys`).
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Settings
from gateway.domain.access import Principal
from gateway.domain.credentials import secret_matches
from gateway.flows.identities import Identities
from gateway.store import credentials as store
from libs.common.db import create_engine

DEMO_PLATFORM_ID = "plt_demo"
DEMO_MERCHANT_ID = "mch_demo"
DEMO_USER_ID = "usr_demo"
USER_TOKEN_LEFT_SECONDS_MIN = 600
DEFAULT_KEYS_PATH = ".juhe/demo-keys.json"


def seed_demo(
    database_url: str,
    keys_path: str | Path = DEFAULT_KEYS_PATH,
    *,
    settings: Settings | None = None,
    merchant: bool = True,
) -> dict[str, Any]:
    return asyncio.run(seed_demo_async(database_url, keys_path, settings=settings, merchant=merchant))


async def seed_demo_async(
    database_url: str,
    keys_path: str | Path = DEFAULT_KEYS_PATH,
    *,
    settings: Settings | None = None,
    merchant: bool = True,
) -> dict[str, Any]:
    settings = (settings or Settings()).model_copy(update={"database_url": database_url, "key_cache_ttl_seconds": 0})
    path = Path(keys_path)
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        identities = Identities(engine, settings)
        saved = _read(path)
        if saved is not None and await _still_valid(engine, identities, saved, merchant=merchant):
            if not await _token_fresh(engine, saved):
                saved = {**saved, **await _issue_user_token(identities)}
                save_keys(path, saved)
            return {**saved, "created": False}
        keys = await _issue(identities, engine, merchant=merchant)
        save_keys(path, keys)
        return {**keys, "created": True}
    finally:
        await engine.dispose()


async def _issue(identities: Identities, engine: AsyncEngine, *, merchant: bool) -> dict[str, Any]:
    """Create what is missing; revoke and replace demo keys whose plaintext we no longer have (the merchant's only
    when the merchant is the seed's to make)."""
    platform = Principal("platform", "seed", DEMO_PLATFORM_ID)
    async with identities.uow.begin() as tx:
        await store.ensure_platform(tx.conn, platform_id=DEMO_PLATFORM_ID, name="Demo platform")
        old_keys = [
            *await store.list_api_keys(tx.conn, owner_kind="platform", owner_id=DEMO_PLATFORM_ID),
            *(await store.list_api_keys(tx.conn, owner_kind="merchant", owner_id=DEMO_MERCHANT_ID) if merchant else []),
        ]
        existing = await store.get_merchant(tx.conn, DEMO_MERCHANT_ID)
        user = await store.get_user(tx.conn, DEMO_USER_ID)
    for key in old_keys:
        if key["status"] == "active":
            await identities.revoke_key(platform, key["key_id"])
    admin = await identities.create_admin_key(platform_id=DEMO_PLATFORM_ID)
    if user is None:
        await identities.create_user(platform, name="Demo user", user_id=DEMO_USER_ID)
    keys = {
        "platform_id": DEMO_PLATFORM_ID,
        "admin_key": admin["token"],
        "user_id": DEMO_USER_ID,
        **await _issue_user_token(identities),
    }
    if not merchant:
        return keys
    if existing is None:
        created = await identities.create_merchant(
            platform, name="Demo merchant", merchant_id=DEMO_MERCHANT_ID, rsa_public_key_pem=None
        )
        merchant_key, webhook_secret = created["api_key"], created["webhook_secret"]
    else:
        merchant_key = await identities.create_merchant_key(platform, DEMO_MERCHANT_ID, rsa_public_key_pem=None)
        webhook_secret = await identities.webhook_secret(DEMO_MERCHANT_ID)
    return {
        **keys,
        "merchant_id": DEMO_MERCHANT_ID,
        "key_id": merchant_key["key_id"],
        "secret": merchant_key["secret"],
        "webhook_secret": webhook_secret,
    }


async def _issue_user_token(identities: Identities) -> dict[str, Any]:
    """End-user tokens are short-lived (`user_token_ttl_seconds_max`): the seed re-issues an expiring one."""
    platform = Principal("platform", "seed", DEMO_PLATFORM_ID)
    token = await identities.issue_user_token(
        platform, DEMO_USER_ID, ttl_seconds=identities.settings.user_token_ttl_seconds_max, merchant_id=None
    )
    return {"user_token": token["token"], "user_token_expires_at": token["expires_at"].isoformat()}


async def _token_fresh(engine: AsyncEngine, saved: dict[str, Any]) -> bool:
    try:
        expires_at = datetime.fromisoformat(saved["user_token_expires_at"])
        async with engine.connect() as conn:
            token = await store.get_user_token(conn, str(saved["user_token"]).partition(".")[0])
    except Exception:
        return False
    left_seconds = (expires_at - datetime.now(UTC)).total_seconds()
    return token is not None and token["revoked_at"] is None and left_seconds > USER_TOKEN_LEFT_SECONDS_MIN


async def _still_valid(engine: AsyncEngine, identities: Identities, saved: dict[str, Any], *, merchant: bool) -> bool:
    """Every saved key still opens and is active (the user token is checked apart: it expires by design); the
    merchant's only when the merchant is the seed's to make."""
    try:
        admin_id, _, admin_secret = str(saved["admin_key"]).partition(".")
        async with engine.connect() as conn:
            admin = await store.get_api_key(conn, admin_id)
        admin_ok = (
            admin is not None
            and admin["status"] == "active"
            and admin["expires_at"] is None
            and admin["mode"] == "test"
            and secret_matches(admin_secret, admin["secret_hash"])
        )
        if not merchant or not admin_ok:
            return admin_ok
        merchant_key = await identities.key(saved["key_id"])
        return (
            merchant_key is not None
            and merchant_key.status == "active"
            and merchant_key.expires_at_epoch is None
            and merchant_key.mode == "test"
            and merchant_key.secret == saved["secret"]
            and await identities.webhook_secret(DEMO_MERCHANT_ID) == saved["webhook_secret"]
        )
    except Exception:  # a file we cannot trust is re-issued, never a crash of the launcher
        return False


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def save_keys(path: str | Path, keys: dict[str, Any]) -> None:
    """The plaintext demo keys, readable by their owner only (written atomically: a reader never sees half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(keys, f, indent=2)
    os.replace(tmp, path)
