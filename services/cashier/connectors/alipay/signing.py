"""Alipay OpenAPI v2 RSA2 signatures (docs/protocols/alipay.md §2, §3, §6).

Three different byte strings are signed on this channel, and mixing them up is the classic Alipay
integration bug, so each has its own function:

* requests: every parameter except `sign` (so `sign_type` IS included), empty values dropped,
  keys sorted by ASCII, joined as raw (not URL-encoded) `k=v&k=v`;
* synchronous responses: the exact raw JSON text of the `<method>_response` node, located by brace
  matching in the body as received (re-serialising the parsed JSON would change the bytes);
* notifications and return redirects (rsaCheckV1): every parameter except `sign` AND `sign_type`.

All three use SHA256withRSA (PKCS#1 v1.5) and Base64.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from functools import lru_cache

from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGN_TYPE = "RSA2"


class ResponseFormatError(ValueError):
    """The response body does not contain the expected node as a JSON object."""


def _pem_text(pem_or_base64: str, kind: str) -> bytes:
    """Accept a PEM, or the bare Base64 body that Alipay's console shows (no BEGIN/END lines)."""
    text = pem_or_base64.strip()
    if "-----BEGIN" in text:
        return text.encode("ascii")
    body = "".join(text.split())
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return ("-----BEGIN " + kind + "-----\n" + "\n".join(lines) + "\n-----END " + kind + "-----\n").encode("ascii")


@lru_cache(maxsize=64)
def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """Load an RSA private key from PKCS#8 or PKCS#1 PEM (or a bare PKCS#8 Base64 body)."""
    key = serialization.load_pem_private_key(_pem_text(pem, "PRIVATE KEY"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("Alipay RSA2 needs an RSA private key")
    return key


@lru_cache(maxsize=64)
def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """Load an RSA public key from SubjectPublicKeyInfo PEM (or a bare Base64 body)."""
    key = serialization.load_pem_public_key(_pem_text(pem, "PUBLIC KEY"))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("Alipay RSA2 needs an RSA public key")
    return key


def request_sign_content(params: Mapping[str, str | None]) -> str:
    """The string a request signature covers: all params but `sign`, non-empty, ASCII-sorted, raw."""
    items = sorted((k, v) for k, v in params.items() if k and k != "sign" and v is not None and v != "")
    return "&".join(f"{k}={v}" for k, v in items)


def notification_sign_content(params: Mapping[str, str]) -> str:
    """rsaCheckV1: all params but `sign` and `sign_type`, non-empty, ASCII-sorted, raw.

    Unknown parameters stay in: Alipay adds fields over time and they are covered by the signature.
    """
    items = sorted(
        (k, v) for k, v in params.items() if k and k not in ("sign", "sign_type") and v is not None and v != ""
    )
    return "&".join(f"{k}={v}" for k, v in items)


def rsa2_sign(content: str, private_key_pem: str) -> str:
    """SHA256withRSA over the UTF-8 bytes of `content`, Base64-encoded."""
    key = load_private_key(private_key_pem)
    signature = key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def rsa2_verify(content: str | bytes, signature_b64: str, public_key_pem: str) -> bool:
    """True when `signature_b64` is a valid SHA256withRSA signature of `content` by that key."""
    if not signature_b64:
        return False
    try:
        # Alipay's Base64 sometimes arrives with spaces where '+' was form-decoded; restore them.
        signature = base64.b64decode(signature_b64.replace(" ", "+"), validate=True)
    except (binascii.Error, ValueError):
        return False
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        load_public_key(public_key_pem).verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except CryptoInvalidSignature:
        return False
    return True


def sign_request_params(params: Mapping[str, str | None], private_key_pem: str) -> dict[str, str]:
    """Return a copy of the non-empty `params` with `sign` added."""
    clean = {k: v for k, v in params.items() if v is not None and v != "" and k != "sign"}
    clean["sign"] = rsa2_sign(request_sign_content(clean), private_key_pem)
    return clean


def response_node_name(method: str) -> str:
    """`alipay.trade.precreate` → `alipay_trade_precreate_response`."""
    return method.replace(".", "_") + "_response"


def _skip_whitespace(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _scan_string_end(text: str, index: int) -> int:
    """Given text[index] == '"', return the index just past the closing quote (escapes respected)."""
    index += 1
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == '"':
            return index + 1
        index += 1
    raise ResponseFormatError("unterminated JSON string")


def _scan_value_end(text: str, index: int) -> int:
    """Return the index just past the JSON object/array starting at text[index], by brace matching."""
    opener = text[index]
    if opener not in "{[":
        raise ResponseFormatError("expected a JSON object or array")
    depth = 0
    while index < len(text):
        char = text[index]
        if char == '"':
            index = _scan_string_end(text, index)
            continue
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    raise ResponseFormatError("unbalanced JSON object")


def top_level_members(text: str) -> dict[str, tuple[int, int]]:
    """Map each top-level key of the JSON object `text` to the (start, end) span of its raw value.

    Only the top level is indexed, so a key of the same name nested inside another node (or a string
    that happens to contain `"alipay_trade_query_response"`) can never be mistaken for the node.
    """
    members: dict[str, tuple[int, int]] = {}
    index = _skip_whitespace(text, 0)
    if index >= len(text) or text[index] != "{":
        raise ResponseFormatError("response body is not a JSON object")
    index = _skip_whitespace(text, index + 1)
    if index < len(text) and text[index] == "}":
        return members
    while index < len(text):
        if text[index] != '"':
            raise ResponseFormatError("expected a key")
        key_end = _scan_string_end(text, index)
        key = json.loads(text[index:key_end])
        index = _skip_whitespace(text, key_end)
        if index >= len(text) or text[index] != ":":
            raise ResponseFormatError("expected ':'")
        index = _skip_whitespace(text, index + 1)
        if index >= len(text):
            raise ResponseFormatError("truncated value")
        start = index
        char = text[index]
        if char in "{[":
            index = _scan_value_end(text, index)
        elif char == '"':
            index = _scan_string_end(text, index)
        else:
            while index < len(text) and text[index] not in ",} \t\r\n":
                index += 1
        members[key] = (start, index)
        index = _skip_whitespace(text, index)
        if index < len(text) and text[index] == ",":
            index = _skip_whitespace(text, index + 1)
            continue
        if index < len(text) and text[index] == "}":
            return members
        raise ResponseFormatError("expected ',' or '}'")
    raise ResponseFormatError("unterminated JSON object")


def extract_node_text(body: str, node_name: str) -> str | None:
    """The exact raw text of the top-level `node_name` object in `body`, or None when absent.

    This is what the Alipay response signature covers: from the node's `{` to its matching `}`, with
    braces inside strings and escaped quotes handled, byte-for-byte as the server wrote it.
    """
    span = top_level_members(body).get(node_name)
    if span is None:
        return None
    text = body[span[0] : span[1]]
    if not text.startswith("{"):
        raise ResponseFormatError(f"{node_name} is not a JSON object")
    return text
