"""UnionPay ACP 5.1.0 signatures (signMethod=01) and the `k=v&…` wire format (docs/protocols/unionpay.md §1, §2).

Signing, as the official SDK's `SDKUtil.sign` (sha256X16 + signBySoft256):
1. blank fields are removed and values trimmed (`filterBlank`);
2. every field but `signature`, sorted by key, joined `k=v&…` with raw (not URL-encoded) values;
3. d = lower-case hex of SHA-256 over the UTF-8 string (64 ASCII characters);
4. signature = Base64(SHA256withRSA(private key, d)): the hex digest is hashed a second time.

Verifying a response or notification uses the same double hash, but over the fields exactly as
received: an empty field that is present IS part of the signed string there (omnipay
`ResponseVerifyHelper`, smartwalle `VerifySign`), so nothing is filtered before verifying.

Back-end responses are a `k=v&k=v` string that is not URL-encoded; a value may be a `{…}` or `[…]`
block that itself contains `&` and `=` (the official `SDKUtil.parseQString`), so the parser tracks
bracket depth instead of splitting on every `&`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGNATURE_FIELD = "signature"
RESPONSE_FIELDS_MAX = 200


class ResponseFormatError(ValueError):
    """A body that is not a well-formed `k=v&…` string."""


def filter_blank(params: Mapping[str, str | None]) -> dict[str, str]:
    """The request fields that are signed and sent: None and blank values dropped, values trimmed."""
    return {k.strip(): v.strip() for k, v in params.items() if v is not None and v.strip() and k.strip()}


def sign_content(params: Mapping[str, str]) -> str:
    """`k=v&…` over every field but `signature`, sorted by key, raw values."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != SIGNATURE_FIELD)


def sha256_hex(content: str) -> bytes:
    """The first hash: 64 lower-case hex ASCII bytes, which SHA256withRSA then hashes again."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest().encode("ascii")


def sign(params: Mapping[str, str | None], private_key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The request to send: blank fields removed, plus `signature` (certId must already be set)."""
    fields = filter_blank(params)
    fields.pop(SIGNATURE_FIELD, None)
    digest = sha256_hex(sign_content(fields))
    raw = private_key.sign(digest, padding.PKCS1v15(), hashes.SHA256())
    fields[SIGNATURE_FIELD] = base64.b64encode(raw).decode("ascii")
    return fields


def verify(params: Mapping[str, str], public_key: rsa.RSAPublicKey) -> bool:
    """True when `signature` is the double-hash signature of the fields as received."""
    encoded = params.get(SIGNATURE_FIELD, "")
    if not encoded:
        return False
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(raw, sha256_hex(sign_content(params)), padding.PKCS1v15(), hashes.SHA256())
    except CryptoInvalidSignature:
        return False
    return True


def parse_kv(body: str) -> dict[str, str]:
    """Parse a UnionPay `k=v&…` body without URL-decoding; `{…}`/`[…]` values are kept whole.

    Repeated keys are refused: the signed string would be ambiguous.
    """
    fields: dict[str, str] = {}
    key: str | None = None
    start = 0
    depth = 0
    text = body.strip()
    for index, char in enumerate(text + "&"):
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth = max(0, depth - 1)
        elif char == "=" and key is None and depth == 0:
            key = text[start:index]
            start = index + 1
        elif char == "&" and depth == 0:
            if key is None:
                if text[start:index].strip():
                    raise ResponseFormatError(f"field without '=': {text[start:index][:40]!r}")
            else:
                if key in fields:
                    raise ResponseFormatError(f"repeated field {key!r}")
                fields[key] = text[start:index]
                if len(fields) > RESPONSE_FIELDS_MAX:
                    raise ResponseFormatError("too many fields")
            key = None
            start = index + 1
    if depth:
        raise ResponseFormatError("unbalanced brackets in body")
    return fields


def to_kv(params: Mapping[str, str]) -> str:
    """The inverse of parse_kv (raw values, insertion order)."""
    return "&".join(f"{k}={v}" for k, v in params.items())
