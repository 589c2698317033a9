"""The request guards in PostgreSQL: nonces, rate-limit counters and idempotency records.

Each guard is one atomic statement run in autocommit (`guard_engine`): a unique constraint or an
`INSERT … ON CONFLICT … RETURNING` decides races between gateway replicas, so no transaction has to
stay open across the call to the upstream service. Times come from the database clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain.idempotency import StoredRecord

GUARDED_TABLES = ("request_nonces", "idempotency_records", "rate_limit_counters", "user_tokens")


def guard_engine(engine: AsyncEngine) -> AsyncEngine:
    """The same pool, in autocommit: one round trip per guard statement."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


@dataclass(frozen=True, slots=True)
class Hit:
    hits: int
    window_start: int
    now_epoch: float
    nonce_fresh: bool = True


_COUNT_CTE = """
clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now_epoch),
hit AS (
    INSERT INTO rate_limit_counters (bucket, window_start, hits, expires_at)
    SELECT :bucket, start, 1, to_timestamp(start + 2 * CAST(:window AS bigint))
    FROM (SELECT (floor(now_epoch / CAST(:window AS bigint)) * CAST(:window AS bigint))::bigint AS start FROM clock) w
    ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limit_counters.hits + 1
    RETURNING hits, window_start
)
"""

_NONCE_AND_HIT = text(
    """
WITH nonce AS (
    INSERT INTO request_nonces (key_id, nonce, expires_at)
    VALUES (:key_id, :nonce, to_timestamp(CAST(:nonce_expires_epoch AS bigint)))
    ON CONFLICT DO NOTHING
    RETURNING 1
),"""
    + _COUNT_CTE
    + """
SELECT (SELECT count(*) FROM nonce) AS nonce_fresh, hit.hits, hit.window_start, clock.now_epoch
FROM hit, clock
"""
)

_HIT = text("WITH " + _COUNT_CTE + " SELECT hit.hits, hit.window_start, clock.now_epoch FROM hit, clock")


async def claim_nonce_and_count(
    conn: AsyncConnection, *, key_id: str, nonce: str, nonce_expires_epoch: int, bucket: str, window_seconds: int
) -> Hit:
    """One round trip: remember the nonce (unless seen) and count the request in its rate window."""
    row = (
        await conn.execute(
            _NONCE_AND_HIT,
            {
                "key_id": key_id,
                "nonce": nonce,
                "nonce_expires_epoch": nonce_expires_epoch,
                "bucket": bucket,
                "window": window_seconds,
            },
        )
    ).one()
    return Hit(hits=row.hits, window_start=row.window_start, now_epoch=row.now_epoch, nonce_fresh=row.nonce_fresh == 1)


async def count_hit(conn: AsyncConnection, *, bucket: str, window_seconds: int) -> Hit:
    row = (await conn.execute(_HIT, {"bucket": bucket, "window": window_seconds})).one()
    return Hit(hits=row.hits, window_start=row.window_start, now_epoch=row.now_epoch)


_ACQUIRE = text(
    """
INSERT INTO idempotency_records (scope, key, request_hash, state, lock_token, locked_until, created_at, expires_at)
VALUES (:scope, :key, :request_hash, 'in_progress', :lock_token,
        clock_timestamp() + make_interval(secs => CAST(:lock_seconds AS float8)), clock_timestamp(),
        clock_timestamp() + make_interval(secs => CAST(:ttl_seconds AS float8)))
ON CONFLICT (scope, key) DO UPDATE SET
    request_hash = EXCLUDED.request_hash, state = 'in_progress', lock_token = EXCLUDED.lock_token,
    locked_until = EXCLUDED.locked_until, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at,
    response_status = NULL, response_headers = NULL, response_body = NULL
WHERE idempotency_records.expires_at < clock_timestamp()
   OR (idempotency_records.state = 'in_progress'
       AND idempotency_records.locked_until < clock_timestamp()
       AND idempotency_records.request_hash = EXCLUDED.request_hash)
RETURNING 1
"""
)

_LOAD = text(
    """
SELECT request_hash, state, response_status, response_headers, response_body
FROM idempotency_records WHERE scope = :scope AND key = :key AND expires_at >= clock_timestamp()
"""
)

_COMPLETE = text(
    """
UPDATE idempotency_records
SET state = 'done', lock_token = NULL, locked_until = NULL,
    response_status = :status, response_headers = CAST(:headers AS jsonb), response_body = :body
WHERE scope = :scope AND key = :key AND lock_token = :lock_token AND state = 'in_progress'
"""
)

_RELEASE = text(
    "DELETE FROM idempotency_records WHERE scope = :scope AND key = :key AND lock_token = :lock_token "
    "AND state = 'in_progress'"
)


async def acquire_idempotency_key(
    conn: AsyncConnection,
    *,
    scope: str,
    key: str,
    request_hash: bytes,
    lock_token: str,
    lock_seconds: float,
    ttl_seconds: int,
) -> bool:
    """True when this request now owns the key: new, expired, or abandoned by a dead gateway."""
    params = {
        "scope": scope,
        "key": key,
        "request_hash": request_hash,
        "lock_token": lock_token,
        "lock_seconds": lock_seconds,
        "ttl_seconds": ttl_seconds,
    }
    return (await conn.execute(_ACQUIRE, params)).first() is not None


async def load_idempotency_record(conn: AsyncConnection, *, scope: str, key: str) -> StoredRecord | None:
    row = (await conn.execute(_LOAD, {"scope": scope, "key": key})).first()
    if row is None:
        return None
    return StoredRecord(
        request_hash=bytes(row.request_hash),
        state=row.state,
        response_status=row.response_status,
        response_headers=row.response_headers,
        response_body=bytes(row.response_body) if row.response_body is not None else None,
    )


async def complete_idempotency_key(
    conn: AsyncConnection,
    *,
    scope: str,
    key: str,
    lock_token: str,
    status: int,
    headers: dict[str, str],
    body: bytes,
) -> bool:
    params = {
        "scope": scope,
        "key": key,
        "lock_token": lock_token,
        "status": status,
        "headers": json.dumps(headers),
        "body": body,
    }
    return int((await conn.execute(_COMPLETE, params)).rowcount) == 1


async def release_idempotency_key(conn: AsyncConnection, *, scope: str, key: str, lock_token: str) -> None:
    await conn.execute(_RELEASE, {"scope": scope, "key": key, "lock_token": lock_token})


async def prune_expired(conn: AsyncConnection, *, table: str, batch_max: int) -> int:
    """Delete up to `batch_max` expired rows of one guard table; the count deleted."""
    if table not in GUARDED_TABLES:
        raise ValueError(f"not a guard table: {table}")
    stmt = text(
        f"DELETE FROM {table} WHERE ctid IN "  # table name from the fixed tuple above
        f"(SELECT ctid FROM {table} WHERE expires_at < clock_timestamp() LIMIT :batch_max)"
    )
    return int((await conn.execute(stmt, {"batch_max": batch_max})).rowcount)
