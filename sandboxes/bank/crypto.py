"""The bank protocol's signature: `X-Bank-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
`"<t>.<raw body>"` (requests: body or, for GET, the raw path and query) with the client's secret.

Why HMAC and not RSA: there is no public bank payout standard to follow (each bank has its own); a
shared-secret HMAC with a timestamp is what most bank-direct (银企直联) gateways in front of a
host-to-host link use, and it is enough to make forged callbacks and replays detectable.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Bank-Signature"
CLIENT_HEADER = "X-Bank-Client-Id"


def sign(secret: str, payload: bytes, *, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, payload: bytes, header: str | None, *, skew_seconds_max: int, now: int | None = None) -> bool:
    if not header:
        return False
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    current = int(time.time()) if now is None else now
    if abs(current - t) > skew_seconds_max:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)
