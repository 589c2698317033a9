"""Merchant webhooks: how they are signed and when a failed delivery is tried again.

Signature (Stripe-style, so merchants can reuse the verification code they already know):
`Juhe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`. The timestamp is
inside the signed text so a captured delivery cannot be replayed later with a fresh header;
receivers should refuse timestamps outside a tolerance (default 5 minutes).

Secret rotation (webhook endpoints): during the overlap window after `rotate-secret` a delivery carries one
`v1=` entry per secret in force, the new one first — `t=<t>,v1=<hex by new>,v1=<hex by previous>` — so a
receiver still holding either secret verifies it; after the window only the new secret signs. A verifier
accepts the delivery when any `v1=` entry matches the secret it holds.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Sequence

SIGNATURE_HEADER = "Juhe-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300

# 11 retries over about 24 h (Σ = 85 875 s ≈ 23.9 h), like the channels' own notification schedules.
DEFAULT_RETRY_SCHEDULE_SECONDS: tuple[int, ...] = (
    15,
    60,
    300,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    21600,
    18000,
)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    ABANDONED = "abandoned"  # the schedule ran out; a manual resend starts it again


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes, *, also: Sequence[str] = ()) -> str:
    """The header value; `also` are further secrets still in force (a rotation's previous one), each adding
    its own `v1=` entry after the main one."""
    entries = [f"v1={_mac(s, timestamp, body)}" for s in (secret, *also)]
    return f"t={timestamp}," + ",".join(entries)


def verify_signature(
    secret: str | Sequence[str],
    header: str,
    body: bytes,
    *,
    now: int,
    tolerance_seconds: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """What a merchant runs on receipt; used by our tests as a real receiver would. True when any `v1=` entry
    matches `secret` (or any of several secrets, for a receiver that holds both during a rotation)."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_seconds:
        return False
    held = (secret,) if isinstance(secret, str) else tuple(secret)
    candidates = parts.get("v1", [])
    return any(hmac.compare_digest(_mac(s, timestamp, body), c) for s in held for c in candidates)


def retry_delay_seconds(attempt_count: int, *, schedule_seconds: tuple[float, ...], scale: float) -> float | None:
    """Delay before the next try after `attempt_count` failed tries; None once the schedule is spent."""
    if attempt_count < 1 or attempt_count > len(schedule_seconds):
        return None
    return schedule_seconds[attempt_count - 1] * scale
