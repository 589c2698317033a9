"""WeChat Pay v3 cryptography as the channel side does it (docs/protocols/wechatpay.md §2, §3, §5).

Deliberately separate from the connector's `signing.py`: the sandbox is the outside world and
must not share code with Juhe, so a bug on one side cannot hide the same bug on the other.
"""

from __future__ import annotations

import base64
import re
import secrets
import string

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
_ALNUM = string.ascii_letters + string.digits
_AUTH_PARAM = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')
AUTH_PARAMS_REQUIRED = ("mchid", "nonce_str", "timestamp", "serial_no", "signature")


class AuthorizationError(ValueError):
    """The Authorization header is missing a part or is malformed."""


def nonce_str(length: int = 32) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def request_message(method: str, request_uri: bytes, timestamp: str, nonce: str, body: bytes) -> bytes:
    """`METHOD\\nURI\\nTIMESTAMP\\nNONCE\\nBODY\\n` built from the raw bytes as received."""
    return b"%s\n%s\n%s\n%s\n%s\n" % (method.encode(), request_uri, timestamp.encode(), nonce.encode(), body)


def response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    return b"%s\n%s\n%s\n" % (timestamp.encode(), nonce.encode(), body)


def parse_authorization(header: str | None) -> dict[str, str]:
    """Parse `WECHATPAY2-SHA256-RSA2048 k="v",...`; any deviation is an error (strict)."""
    if not header:
        raise AuthorizationError("missing Authorization header")
    scheme, _, rest = header.partition(" ")
    if scheme != AUTH_SCHEME:
        raise AuthorizationError(f"unsupported scheme {scheme!r}")
    params: dict[str, str] = {}
    for part in rest.split(","):
        match = _AUTH_PARAM.fullmatch(part)
        if match is None:
            raise AuthorizationError(f"malformed parameter {part!r}")
        if match.group(1) in params:
            raise AuthorizationError(f"duplicate parameter {match.group(1)}")
        params[match.group(1)] = match.group(2)
    missing = [name for name in AUTH_PARAMS_REQUIRED if not params.get(name)]
    if missing:
        raise AuthorizationError(f"missing {', '.join(missing)}")
    if not params["timestamp"].isdigit():
        raise AuthorizationError("timestamp is not unix seconds")
    return params


def sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def verify(public_key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def encrypt_resource(apiv3_key: str, plaintext: bytes, associated_data: str) -> dict[str, str]:
    """AEAD_AES_256_GCM with a 12-character ASCII nonce, as WeChat encrypts callback resources."""
    nonce = nonce_str(12)
    sealed = AESGCM(apiv3_key.encode("ascii")).encrypt(
        nonce.encode("ascii"), plaintext, associated_data.encode("utf-8")
    )
    return {
        "algorithm": "AEAD_AES_256_GCM",
        "nonce": nonce,
        "associated_data": associated_data,
        "ciphertext": base64.b64encode(sealed).decode("ascii"),
    }


def rsa_oaep_decrypt(private_key: rsa.RSAPrivateKey, ciphertext_b64: str) -> str:
    """Sensitive request fields: RSA-OAEP (SHA-1, MGF1-SHA1) under a platform key, Base64 (§1.4)."""
    sealed = base64.b64decode(ciphertext_b64, validate=True)
    plain = private_key.decrypt(
        sealed, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    )
    return plain.decode("utf-8")
