"""Idempotency rules: what identifies a request, and what to do when its key was seen before.

The record is keyed by (principal scope, Idempotency-Key); the fingerprint covers method, path+query and
the exact body bytes, so "same key, other request" is detected even when only a query parameter changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from gateway.domain.errors import IDEMPOTENCY_KEY_IN_PROGRESS, IDEMPOTENCY_KEY_INVALID, IDEMPOTENCY_KEY_MISSING
from libs.common.errors import IDEMPOTENCY_KEY_REUSED, Problem

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_LENGTH_MAX = 255
IN_PROGRESS_RETRY_AFTER_SECONDS = 1
# Responses at or above this status are not stored: the upstream may not have finished, so a retry with
# the same key must reach it again (the service de-duplicates by the forwarded Idempotency-Key).
UNSTORED_STATUS_MIN = 500
# Response headers worth replaying; the rest (dates, trace ids) belong to the first exchange.
REPLAYED_RESPONSE_HEADERS = frozenset({"content-type", "location", "link"})


@dataclass(frozen=True, slots=True)
class StoredRecord:
    request_hash: bytes
    state: Literal["in_progress", "done"]
    response_status: int | None
    response_headers: dict[str, str] | None
    response_body: bytes | None
    # Sealed with the credentials key ring (row id: `sealed_row_id`); only pre-sealing records are plain.
    response_sealed: bool = False


def sealed_row_id(scope: str, key: str) -> str:
    """The associated data a stored response is sealed with: a body copied onto another key does not open. Joined by
    a newline, which neither a scope nor a key (printable ASCII) holds, so no two (scope, key) pairs give one id."""
    return f"idempotency\n{scope}\n{key}"


def validate_key(value: str | None) -> str:
    if value is None:
        raise Problem(IDEMPOTENCY_KEY_MISSING, f"send an {IDEMPOTENCY_HEADER} header (a UUID is fine)")
    if not 1 <= len(value) <= KEY_LENGTH_MAX or not value.isprintable() or not value.isascii():
        raise Problem(IDEMPOTENCY_KEY_INVALID, f"1-{KEY_LENGTH_MAX} printable ASCII characters")
    return value


def fingerprint(method: str, path_and_query: str, body: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path_and_query.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def decide(record: StoredRecord, request_hash: bytes) -> StoredRecord:
    """For a key that is already taken: the record to replay, or the 409 to answer."""
    if record.request_hash != request_hash:
        raise Problem(IDEMPOTENCY_KEY_REUSED, "this Idempotency-Key was used with a different request")
    if record.state != "done":
        raise Problem(
            IDEMPOTENCY_KEY_IN_PROGRESS,
            "the first request with this Idempotency-Key has not finished; retry shortly",
            retry_after_seconds=IN_PROGRESS_RETRY_AFTER_SECONDS,
        )
    return record


def should_store(status: int) -> bool:
    return status < UNSTORED_STATUS_MIN
