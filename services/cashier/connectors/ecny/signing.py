"""Message signatures of Juhe's e-CNY bank protocol (docs/protocols/ecny.md §2).

Requests:  SM2(merchant key) over `METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nSM3HEX(body)\\n`.
Responses and notifications: SM2(bank key) over `TIMESTAMP\\nNONCE\\nSM3HEX(body)\\n`.
The headers carry the timestamp (Unix seconds), a nonce (32 hex) and the 128-hex r‖s signature; a
timestamp more than `skew` seconds from now is refused, so a captured message cannot be replayed later.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping

from services.cashier.connectors.ecny import gm
from services.cashier.connectors.ecny.models import HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP


def request_string(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return f"{method.upper()}\n{path}\n{timestamp}\n{nonce}\n{gm.sm3_hex(body)}\n".encode()


def message_string(timestamp: str, nonce: str, body: bytes) -> bytes:
    return f"{timestamp}\n{nonce}\n{gm.sm3_hex(body)}\n".encode()


def sign_request(
    private_key_hex: str, public_key_hex: str, method: str, path: str, body: bytes, *, now: int | None = None
) -> dict[str, str]:
    timestamp, nonce = str(int(time.time()) if now is None else now), secrets.token_hex(16)
    signature = gm.sm2_sign(private_key_hex, public_key_hex, request_string(method, path, timestamp, nonce, body))
    return {HEADER_TIMESTAMP: timestamp, HEADER_NONCE: nonce, HEADER_SIGNATURE: signature}


def verify_message(
    public_key_hex: str, headers: Mapping[str, str], body: bytes, *, skew_seconds_max: int, now: int | None = None
) -> bool:
    """A bank response or notification: fresh timestamp and a valid SM2 signature over the body."""
    lower = {k.lower(): v for k, v in headers.items()}
    timestamp = lower.get(HEADER_TIMESTAMP.lower(), "")
    nonce = lower.get(HEADER_NONCE.lower(), "")
    signature = lower.get(HEADER_SIGNATURE.lower(), "")
    if not timestamp.isdigit() or not nonce or not signature:
        return False
    current = int(time.time()) if now is None else now
    if abs(current - int(timestamp)) > skew_seconds_max:
        return False
    return gm.sm2_verify(public_key_hex, signature, message_string(timestamp, nonce, body))
