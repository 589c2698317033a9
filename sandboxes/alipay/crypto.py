"""The sandbox's own RSA2 code (sandboxes may not import Juhe's connector; that is the point).

Strict on purpose: the sandbox is the reference the connector is tested against, so it checks
exactly what Alipay checks and no more leniently (docs/protocols/alipay.md §2, §3, §6).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def request_sign_content(params: Mapping[str, str]) -> str:
    """Everything but `sign` (sign_type included), empty values dropped, ASCII-sorted, raw k=v&."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")


def notify_sign_content(params: Mapping[str, str]) -> str:
    """What rsaCheckV1 checks: everything but `sign` and `sign_type`, non-empty, sorted, raw."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("sign", "sign_type") and params[k] != "")


def sign(content: str, key: rsa.RSAPrivateKey) -> str:
    return base64.b64encode(key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def verify(content: str, signature_b64: str, key: rsa.RSAPublicKey) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(signature, content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def signed_response_text(
    node_name: str, node: dict[str, Any], key: rsa.RSAPrivateKey | None, alipay_cert_sn: str | None = None
) -> str:
    """`{"<node_name>":<node JSON>,"sign":"..."}` where the signature covers the node's exact text.

    The node is serialised once and the same characters are both signed and sent, so the
    connector's brace-matching extraction sees exactly the signed bytes. `key=None` gives an
    unsigned body (Alipay does not sign e.g. its isv.invalid-signature refusals). In certificate
    mode `alipay_cert_sn` names the certificate whose key signed (a sibling, outside the signed text).
    """
    node_text = json.dumps(node, ensure_ascii=False, separators=(",", ":"))
    body = '{"' + node_name + '":' + node_text
    if alipay_cert_sn is not None:
        body += ',"alipay_cert_sn":"' + alipay_cert_sn + '"'
    if key is not None:
        body += ',"sign":"' + sign(node_text, key) + '"'
    return body + "}"
