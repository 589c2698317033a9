"""HMAC-SHA256 signatures between the ledger and the identity provider (both directions).

Signed text: "<unix timestamp>.<raw body>"; headers `X-Identity-Timestamp` and `X-Identity-Signature`
(lowercase hex). The timestamp bounds replays; comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Identity-Timestamp"
SIGNATURE_HEADER = "X-Identity-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, *, now: float, max_age_seconds: int
) -> bool:
    if not timestamp or not signature or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if abs(now - int(timestamp)) > max_age_seconds:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)
