"""Verify the webhooks Juhe sends to merchants.

    Juhe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with the webhook secret>

Several `v1=` entries appear while a webhook endpoint's secret is being rotated (one per secret in force, the
new one first: `t=…,v1=<new>,v1=<previous>`); one match is enough, so a receiver holding either secret
verifies. A receiver may also pass both secrets (a list) while it moves to the new one. Always verify the raw
body bytes as received, before parsing them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any

from juhe_sdk.errors import WebhookSignatureError

SIGNATURE_HEADER = "Juhe-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + payload, hashlib.sha256).hexdigest()


def sign_webhook(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The header value Juhe sends (useful to test your own webhook endpoint)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={compute_signature(payload, secret, timestamp)}"


def verify_signature(
    payload: bytes | str,
    header: str | None,
    secret: str | Sequence[str],
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    if not header:
        raise WebhookSignatureError(f"missing {SIGNATURE_HEADER} header")
    body = payload.encode() if isinstance(payload, str) else payload
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value.strip())
    if timestamp is None or not candidates:
        raise WebhookSignatureError(f"malformed {SIGNATURE_HEADER}: expected t=…,v1=…")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise WebhookSignatureError("webhook timestamp outside the tolerance (replayed or clock skew)")
    held = [secret] if isinstance(secret, str) else list(secret)
    expected = [compute_signature(body, s, timestamp) for s in held]
    if not any(hmac.compare_digest(e, candidate) for e in expected for candidate in candidates):
        raise WebhookSignatureError("webhook signature does not match")


def construct_event(
    payload: bytes | str,
    header: str | None,
    secret: str | Sequence[str],
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> Any:
    """Verify, then parse the JSON body: the only way event data should enter your system."""
    verify_signature(payload, header, secret, tolerance_seconds=tolerance_seconds, now=now)
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise WebhookSignatureError("webhook body is not JSON") from exc
