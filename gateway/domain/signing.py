"""Merchant request signatures: header format, the string to sign, and verification.

    Authorization: JUHE-HMAC-SHA256 key_id=<key id>,timestamp=<unix seconds>,nonce=<nonce>,signature=<base64>
    Authorization: JUHE-RSA-SHA256  key_id=<key id>,timestamp=<unix seconds>,nonce=<nonce>,signature=<base64>

The string to sign is seven lines, each ending in "\\n" (WeChat Pay v3's shape, plus the algorithm and
key id so a signature can never be replayed under another key or algorithm):

    <algorithm>\\n<key_id>\\n<METHOD>\\n<path and query as sent>\\n<timestamp>\\n<nonce>\\n<hex SHA-256 of body>\\n

HMAC-SHA256 uses the key's secret; RSA-SHA256 is PKCS#1 v1.5 over SHA-256 with the merchant's private
key, verified with the public key the merchant uploaded. The body is hashed rather than inlined so the
signed string stays small for large bodies; the empty body hashes to e3b0c442…b855.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.domain.errors import (
    AUTHORIZATION_MALFORMED,
    RSA_PUBLIC_KEY_INVALID,
    SIGNATURE_INVALID,
    TIMESTAMP_OUT_OF_WINDOW,
)
from libs.common.errors import Problem

HMAC_ALGORITHM = "JUHE-HMAC-SHA256"
RSA_ALGORITHM = "JUHE-RSA-SHA256"
Algorithm = Literal["JUHE-HMAC-SHA256", "JUHE-RSA-SHA256"]
ALGORITHMS: frozenset[str] = frozenset({HMAC_ALGORITHM, RSA_ALGORITHM})
NONCE_RE = re.compile(r"^[A-Za-z0-9_\-]{8,64}$")
# `key_test_<32 hex>` / `key_live_<32 hex>` (the mode shows in the id, docs/test-mode.md); `key_<32 hex>` for keys
# made before modes existed (their mode is in the database: live, migration 0007).
KEY_ID_RE = re.compile(r"^[a-z]{1,8}(?:_(?:test|live))?_[0-9a-f]{32}$")
HEADER_LENGTH_MAX = 2048
RSA_KEY_BITS_MIN = 2048


@dataclass(frozen=True, slots=True)
class SignedAuthorization:
    algorithm: Algorithm
    key_id: str
    timestamp: int
    nonce: str
    signature: bytes


def parse_authorization(header: str) -> SignedAuthorization:
    if len(header) > HEADER_LENGTH_MAX:
        raise Problem(AUTHORIZATION_MALFORMED, "Authorization header too long")
    scheme, _, params = header.strip().partition(" ")
    if scheme not in ALGORITHMS:
        raise Problem(AUTHORIZATION_MALFORMED, f"unknown scheme; use {HMAC_ALGORITHM} or {RSA_ALGORITHM}")
    fields: dict[str, str] = {}
    for part in params.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name in fields:
            raise Problem(AUTHORIZATION_MALFORMED, "expected key_id=…,timestamp=…,nonce=…,signature=…")
        fields[name] = value.strip().strip('"')
    if set(fields) != {"key_id", "timestamp", "nonce", "signature"}:
        raise Problem(AUTHORIZATION_MALFORMED, "expected exactly key_id, timestamp, nonce and signature")
    if not KEY_ID_RE.match(fields["key_id"]):
        raise Problem(AUTHORIZATION_MALFORMED, "key_id is not a Juhe key id")
    if not fields["timestamp"].isdigit() or len(fields["timestamp"]) > 12:
        raise Problem(AUTHORIZATION_MALFORMED, "timestamp must be unix seconds")
    if not NONCE_RE.match(fields["nonce"]):
        raise Problem(AUTHORIZATION_MALFORMED, "nonce must be 8-64 characters of [A-Za-z0-9_-]")
    try:
        signature = base64.b64decode(fields["signature"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Problem(AUTHORIZATION_MALFORMED, "signature must be base64") from exc
    return SignedAuthorization(
        algorithm=scheme,  # type: ignore[arg-type]
        key_id=fields["key_id"],
        timestamp=int(fields["timestamp"]),
        nonce=fields["nonce"],
        signature=signature,
    )


def string_to_sign(
    *, algorithm: str, key_id: str, method: str, path_and_query: str, timestamp: int, nonce: str, body: bytes
) -> bytes:
    lines = (algorithm, key_id, method.upper(), path_and_query, str(timestamp), nonce, hashlib.sha256(body).hexdigest())
    return "".join(f"{line}\n" for line in lines).encode()


def hmac_signature(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def check_timestamp(timestamp: int, *, now: float, window_seconds: int) -> None:
    if abs(now - timestamp) > window_seconds:
        raise Problem(TIMESTAMP_OUT_OF_WINDOW, f"timestamp must be within ±{window_seconds} s of the server clock")


def signature_mismatch(algorithm: str, message: bytes) -> Problem:
    """401 `signature_invalid` carrying the string the gateway signed-checked (`string_to_sign`), so a developer
    can diff it with the one their code signed. It holds only what the request itself sent (algorithm, key id,
    method, path and query, timestamp, nonce, the body's SHA-256): never a secret, nothing an attacker lacks."""
    return Problem(
        SIGNATURE_INVALID,
        f"{algorithm} signature does not match the string to sign; compare yours with string_to_sign",
        string_to_sign=message.decode("utf-8", errors="replace"),
    )


def verify_hmac(secret: str, message: bytes, signature: bytes) -> None:
    if not hmac.compare_digest(hmac_signature(secret, message), signature):
        raise signature_mismatch("HMAC-SHA256", message)


def load_rsa_public_key(pem: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise Problem(RSA_PUBLIC_KEY_INVALID, "not a PEM public key") from exc
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < RSA_KEY_BITS_MIN:
        raise Problem(RSA_PUBLIC_KEY_INVALID, f"need an RSA key of at least {RSA_KEY_BITS_MIN} bits")
    return key


def verify_rsa(public_key: rsa.RSAPublicKey, message: bytes, signature: bytes) -> None:
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise signature_mismatch("RSA-SHA256", message) from exc
