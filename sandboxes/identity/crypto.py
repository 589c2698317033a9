"""The identity protocol's signature (docs/protocols/identity.md §1): HMAC-SHA256 over `"<unix timestamp>." +
<raw body>` with the shared secret, hex, in `X-Identity-Signature`, the timestamp in `X-Identity-Timestamp`.

Written independently of the ledger's and the gateway's clients (a sandbox shares no code with Juhe), so a
client that signs wrongly is refused here as a real provider would refuse it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Identity-Timestamp"
SIGNATURE_HEADER = "X-Identity-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    """The headers of a JSON callback signed now (each delivery attempt is signed afresh)."""
    now = int(time.time())
    return {"content-type": "application/json", TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: sign(secret, now, body)}


def verify(secret: str, timestamp: str, signature: str, body: bytes, *, max_age_seconds: int) -> bool:
    """Whether `signature` signs `body` at `timestamp` (decimal unix seconds) no more than `max_age_seconds` away."""
    fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= max_age_seconds
    return fresh and hmac.compare_digest(sign(secret, int(timestamp or 0), body), signature)
