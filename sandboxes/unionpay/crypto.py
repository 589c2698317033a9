"""ACP 5.1.0 signatures as UnionPay computes them, and the raw `k=v&…` answer format.

Written independently of the connector (sandboxes import nothing from services/): SHA-256 of the
sorted `k=v&…` string (every field but `signature`, raw values) as 64 lower-case hex characters,
then SHA256withRSA over those characters, Base64. Requests are verified over the fields as
received, with the merchant certificate named by `certId`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def _digest(fields: Mapping[str, str]) -> bytes:
    content = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "signature")
    return hashlib.sha256(content.encode("utf-8")).hexdigest().encode("ascii")


def sign(fields: dict[str, str], key: rsa.RSAPrivateKey, cert_pem: str) -> dict[str, str]:
    """Add `signPubKeyCert` and `signature`; empty fields are never emitted (docs/protocols/unionpay.md §2)."""
    out = {k: v for k, v in fields.items() if v != "" and k != "signature"}
    out["signPubKeyCert"] = cert_pem
    out["signature"] = base64.b64encode(key.sign(_digest(out), padding.PKCS1v15(), hashes.SHA256())).decode()
    return out


def verify(fields: Mapping[str, str], key: rsa.RSAPublicKey) -> bool:
    try:
        raw = base64.b64decode(fields.get("signature", ""), validate=True)
        key.verify(raw, _digest(fields), padding.PKCS1v15(), hashes.SHA256())
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return bool(raw)


def kv(fields: Mapping[str, str]) -> str:
    """The answer body: `k=v&…`, NOT URL-encoded (values such as `{…}` stay raw)."""
    return "&".join(f"{k}={v}" for k, v in fields.items())
