"""The request guards in PostgreSQL: nonces, rate-limit counters and idempotency records.

Each guard is one atomic statement in autocommit: a unique constraint or an `INSERT … ON CONFLICT …
RETURNING` decides races between gateway replicas, so no transaction stays open across the call to the
upstream service. Times come from the database clock.

The hot path runs on its own small asyncpg pool (`open_guard_pool`), not through SQLAlchemy: a guard is
one prepared statement per request, and the ORM engine's pre-ping, isolation-level switching and
reset-on-return would triple the round trips. Admission is ONE statement (`admit`): claim the nonce,
count the request in its sliding rate window and, for writes, take the idempotency key, in data-modifying CTEs
that see each other's results, so a replayed nonce or a request over the limit never takes a key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain.idempotency import StoredRecord

GUARDED_TABLES = (
    "request_nonces",
    "idempotency_records",
    "rate_limit_counters",
    "user_tokens",
    "wallet_sign_in_links",
    "staff_links",  # console invitations, resets, TOTP tickets (gateway/flows/staff.py)
    "staff_sessions",  # console sessions past their absolute expiry
)
GUARD_POOL_MIN_SIZE = 2
GUARD_COMMAND_TIMEOUT_SECONDS = 10.0


def guard_engine(engine: AsyncEngine) -> AsyncEngine:
    """The same SQLAlchemy pool, in autocommit: for the pruning loop (off the hot path)."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Guard connections hold no session state (single autocommit statements): nothing to reset on release."""


async def open_guard_pool(database_url: URL, *, size_max: int) -> asyncpg.Pool:
    dsn = database_url.set(drivername="postgresql").render_as_string(hide_password=False)
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min(GUARD_POOL_MIN_SIZE, size_max),
        max_size=size_max,
        reset=_no_reset,
        command_timeout=GUARD_COMMAND_TIMEOUT_SECONDS,
        # The guard statements are prepared once per connection; PostgreSQL kept re-planning them (custom
        # plans: planning took longer than executing). Their plans are primary-key lookups whatever the
        # parameters, so the generic plan is always the right one.
        server_settings={"plan_cache_mode": "force_generic_plan"},
    )
    return pool


@dataclass(frozen=True, slots=True)
class Admission:
    # False when the authenticating API key is revoked or expired in the database (nothing was counted).
    key_usable: bool
    # Whether the request was counted within its rate limit (a reused nonce is never counted).
    admitted: bool
    hits: int  # this window's admitted requests (including this one when admitted)
    previous_hits: int  # the previous window's, weighted by the caller for Retry-After
    window_start: int
    now_epoch: float
    nonce_fresh: bool = True
    # Only for writes carrying an Idempotency-Key: whether this request now owns the key, and if not,
    # the record that holds it (None when another replica inserted it after this statement's snapshot).
    acquired: bool = False
    record: StoredRecord | None = None
    # False when the request named a merchant (`suspendable_merchant_id`) that is suspended (nothing counted).
    merchant_open: bool = True


@dataclass(frozen=True, slots=True)
class NonceClaim:
    key_id: str
    nonce: str
    expires_epoch: int


@dataclass(frozen=True, slots=True)
class KeyClaim:
    scope: str
    key: str
    request_hash: bytes
    lock_token: str
    lock_seconds: float
    ttl_seconds: int


def _numbered(sql: str, names: tuple[str, ...]) -> str:
    """`:name` placeholders to asyncpg's `$n` (longest names first, so `:key_id` is not read as `:key`)."""
    for name in sorted(names, key=len, reverse=True):
        sql = sql.replace(f":{name}", f"${names.index(name) + 1}")
    return sql


_NONCE_PARAMS = ("key_id", "nonce", "nonce_expires_epoch")
_HIT_PARAMS = ("bucket", "window", "limit", "auth_key", "suspendable")
_KEY_PARAMS = ("scope", "key", "request_hash", "lock_token", "lock_seconds", "ttl_seconds")

_NONCE_CTE = """
nonce AS (
    INSERT INTO request_nonces (key_id, nonce, expires_at)
    VALUES (:key_id, :nonce, to_timestamp(CAST(:nonce_expires_epoch AS bigint)))
    ON CONFLICT DO NOTHING
    RETURNING 1
),"""

# The sliding-window estimate (domain/ratelimit.py): the previous window's hits weighted by the share of it
# still inside the sliding window, plus this window's. A request is counted only if the estimate with it stays
# within the limit; on a conflict the WHERE is evaluated on the locked, latest row, so concurrent replicas
# cannot both take the last slot. `hit` has a row only for an admitted request. Counter rows live two
# windows (the previous window is read until the end of the current one).
_HIT_CTE = """
auth AS (
    SELECT CAST(:auth_key AS text) IS NULL OR EXISTS (
        SELECT 1 FROM api_keys k
        WHERE k.key_id = :auth_key AND k.status = 'active'
          AND (k.expires_at IS NULL OR k.expires_at > clock_timestamp())
    ) AS key_usable,
    NOT EXISTS (
        SELECT 1 FROM merchants m WHERE m.id = CAST(:suspendable AS text) AND m.suspended_at IS NOT NULL
    ) AS merchant_open
),
clock AS (
    SELECT now_epoch, CAST(floor(now_epoch / CAST(:window AS bigint)) * CAST(:window AS bigint) AS bigint) AS start
    FROM (SELECT CAST(extract(epoch FROM clock_timestamp()) AS float8) AS now_epoch) c
),
prev AS (
    SELECT coalesce((SELECT p.hits FROM rate_limit_counters p
                     WHERE p.bucket = :bucket AND p.window_start = clock.start - CAST(:window AS bigint)), 0) AS hits,
           (clock.start + CAST(:window AS bigint) - clock.now_epoch) / CAST(:window AS bigint) AS weight
    FROM clock
),
hit AS (
    INSERT INTO rate_limit_counters (bucket, window_start, hits, expires_at)
    SELECT :bucket, clock.start, 1, to_timestamp(clock.start + 2 * CAST(:window AS bigint))
    FROM clock CROSS JOIN prev CROSS JOIN auth
    WHERE auth.key_usable AND auth.merchant_open
      AND prev.hits * prev.weight + 1 <= CAST(:limit AS integer) {nonce_condition}
    ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limit_counters.hits + 1
    WHERE (SELECT prev.hits * prev.weight FROM prev) + rate_limit_counters.hits + 1 <= CAST(:limit AS integer)
    RETURNING hits
)"""

# Taken only when the request was admitted (`hit` has a row, which implies a fresh nonce). A key is taken
# over when its record expired, or when it is still in progress past its lock (its gateway died) for the
# same request.
_KEY_CTE = """,
taken AS (
    INSERT INTO idempotency_records
        (scope, key, request_hash, state, lock_token, locked_until, created_at, expires_at)
    SELECT :scope, :key, :request_hash, 'in_progress', :lock_token,
           clock_timestamp() + make_interval(secs => CAST(:lock_seconds AS float8)), clock_timestamp(),
           clock_timestamp() + make_interval(secs => CAST(:ttl_seconds AS float8))
    FROM hit
    ON CONFLICT (scope, key) DO UPDATE SET
        request_hash = EXCLUDED.request_hash, state = 'in_progress', lock_token = EXCLUDED.lock_token,
        locked_until = EXCLUDED.locked_until, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at,
        response_status = NULL, response_headers = NULL, response_body = NULL, response_sealed = false
    WHERE idempotency_records.expires_at < clock_timestamp()
       OR (idempotency_records.state = 'in_progress'
           AND idempotency_records.locked_until < clock_timestamp()
           AND idempotency_records.request_hash = EXCLUDED.request_hash)
    RETURNING 1
)"""

_HIT_SELECT = """(SELECT key_usable FROM auth) AS key_usable, (SELECT merchant_open FROM auth) AS merchant_open,
    (SELECT count(*) FROM hit) AS admitted,
    coalesce((SELECT hits FROM hit),
             (SELECT c.hits FROM rate_limit_counters c WHERE c.bucket = :bucket AND c.window_start = clock.start),
             0) AS hits,
    prev.hits AS previous_hits, clock.start AS window_start, clock.now_epoch"""

_KEY_SELECT = """,
    (SELECT count(*) FROM taken) AS acquired,
    r.request_hash, r.state, r.response_status, r.response_headers, r.response_body, r.response_sealed
FROM clock CROSS JOIN prev
LEFT JOIN idempotency_records r ON r.scope = :scope AND r.key = :key AND r.expires_at >= clock_timestamp()"""


def _admit_sql(*, with_nonce: bool, with_key: bool) -> tuple[str, tuple[str, ...]]:
    names = (_NONCE_PARAMS if with_nonce else ()) + _HIT_PARAMS + (_KEY_PARAMS if with_key else ())
    sql = "WITH " + (_NONCE_CTE if with_nonce else "")
    sql += _HIT_CTE.format(nonce_condition="AND EXISTS (SELECT 1 FROM nonce)" if with_nonce else "")
    if with_key:
        sql += _KEY_CTE
    sql += "\nSELECT " + ("(SELECT count(*) FROM nonce) AS nonce_fresh, " if with_nonce else "1 AS nonce_fresh, ")
    sql += _HIT_SELECT
    sql += _KEY_SELECT if with_key else "\nFROM clock CROSS JOIN prev"
    return _numbered(sql, names), names


_ADMIT = {(n, k): _admit_sql(with_nonce=n, with_key=k) for n in (False, True) for k in (False, True)}


async def admit(
    pool: asyncpg.Pool,
    *,
    bucket: str,
    window_seconds: int,
    limit: int,
    auth_key_id: str | None = None,
    nonce: NonceClaim | None = None,
    key: KeyClaim | None = None,
    suspendable_merchant_id: str | None = None,
) -> Admission:
    """One round trip: claim the nonce (if signed), count the request if within `limit`, take the key (if any).

    A request with a reused nonce or over the limit is not counted and never takes a key. `auth_key_id`
    (the API key that authenticated it) is checked against the database in the same statement: a key
    revoked or expired a moment ago on another replica is refused here even while this replica's key
    cache still holds it, so revocation and rotation take effect at once everywhere. Likewise
    `suspendable_merchant_id` (the merchant a request refused during a suspension acts for): a primary-key
    lookup of `merchants.suspended_at` in the same statement, so a suspension is seen by every replica on
    its very next request, at no extra round trip.
    """
    sql, names = _ADMIT[(nonce is not None, key is not None)]
    values: dict[str, Any] = {
        "bucket": bucket,
        "window": window_seconds,
        "limit": limit,
        "auth_key": auth_key_id,
        "suspendable": suspendable_merchant_id,
    }
    if nonce is not None:
        values.update(key_id=nonce.key_id, nonce=nonce.nonce, nonce_expires_epoch=nonce.expires_epoch)
    if key is not None:
        values.update(
            scope=key.scope,
            key=key.key,
            request_hash=key.request_hash,
            lock_token=key.lock_token,
            lock_seconds=key.lock_seconds,
            ttl_seconds=key.ttl_seconds,
        )
    row = await pool.fetchrow(sql, *(values[name] for name in names))
    assert row is not None
    record = None
    if key is not None and row["request_hash"] is not None:
        record = _record(row)
    return Admission(
        key_usable=bool(row["key_usable"]),
        admitted=row["admitted"] == 1,
        hits=row["hits"],
        previous_hits=row["previous_hits"],
        window_start=row["window_start"],
        now_epoch=row["now_epoch"],
        nonce_fresh=row["nonce_fresh"] == 1,
        acquired=key is not None and row["acquired"] == 1,
        record=record,
        merchant_open=bool(row["merchant_open"]),
    )


def _record(row: Any) -> StoredRecord:
    headers = row["response_headers"]
    return StoredRecord(
        request_hash=bytes(row["request_hash"]),
        state=row["state"],
        response_status=row["response_status"],
        response_headers=json.loads(headers) if isinstance(headers, str) else headers,
        response_body=bytes(row["response_body"]) if row["response_body"] is not None else None,
        response_sealed=bool(row["response_sealed"]),
    )


_ACQUIRE_SQL, _ACQUIRE_NAMES = (
    _numbered(
        "WITH hit AS (SELECT 1 AS hits)" + _KEY_CTE + " SELECT count(*) AS acquired FROM taken",
        _KEY_PARAMS,
    ),
    _KEY_PARAMS,
)


async def acquire_idempotency_key(pool: asyncpg.Pool, claim: KeyClaim) -> bool:
    """Take a key again after `admit` lost a race to a record it could not see: new, expired or abandoned."""
    values = {
        "scope": claim.scope,
        "key": claim.key,
        "request_hash": claim.request_hash,
        "lock_token": claim.lock_token,
        "lock_seconds": claim.lock_seconds,
        "ttl_seconds": claim.ttl_seconds,
    }
    return bool(await pool.fetchval(_ACQUIRE_SQL, *(values[n] for n in _ACQUIRE_NAMES)))


_LOAD = """
SELECT request_hash, state, response_status, response_headers, response_body, response_sealed
FROM idempotency_records WHERE scope = $1 AND key = $2 AND expires_at >= clock_timestamp()
"""

_COMPLETE = """
UPDATE idempotency_records
SET state = 'done', lock_token = NULL, locked_until = NULL,
    response_status = $4, response_headers = CAST($5 AS jsonb), response_body = $6, response_sealed = true
WHERE scope = $1 AND key = $2 AND lock_token = $3 AND state = 'in_progress'
"""

_RENEW = """
UPDATE idempotency_records SET locked_until = clock_timestamp() + make_interval(secs => CAST($4 AS float8))
WHERE scope = $1 AND key = $2 AND lock_token = $3 AND state = 'in_progress'
"""

_RELEASE = "DELETE FROM idempotency_records WHERE scope = $1 AND key = $2 AND lock_token = $3 AND state = 'in_progress'"


async def load_idempotency_record(pool: asyncpg.Pool, *, scope: str, key: str) -> StoredRecord | None:
    row = await pool.fetchrow(_LOAD, scope, key)
    return _record(row) if row is not None else None


async def complete_idempotency_key(
    pool: asyncpg.Pool, claim: KeyClaim, *, status: int, headers: dict[str, str], body: bytes
) -> bool:
    """Store the final answer; `body` is already sealed by the caller (the answer may carry a secret)."""
    result: str = await pool.execute(
        _COMPLETE, claim.scope, claim.key, claim.lock_token, status, json.dumps(headers), body
    )
    return result.endswith(" 1")


async def renew_idempotency_key(pool: asyncpg.Pool, claim: KeyClaim) -> bool:
    """Extend the lease of a key whose request is still running; False when it is no longer ours."""
    result: str = await pool.execute(_RENEW, claim.scope, claim.key, claim.lock_token, claim.lock_seconds)
    return result.endswith(" 1")


async def release_idempotency_key(pool: asyncpg.Pool, claim: KeyClaim) -> None:
    await pool.execute(_RELEASE, claim.scope, claim.key, claim.lock_token)


async def prune_expired(conn: AsyncConnection, *, table: str, batch_max: int) -> int:
    """Delete up to `batch_max` expired rows of one guard table; the count deleted."""
    if table not in GUARDED_TABLES:
        raise ValueError(f"not a guard table: {table}")
    stmt = text(
        f"DELETE FROM {table} WHERE ctid IN "  # table name from the fixed tuple above
        f"(SELECT ctid FROM {table} WHERE expires_at < clock_timestamp() LIMIT :batch_max)"
    )
    return int((await conn.execute(stmt, {"batch_max": batch_max})).rowcount)
