"""WeChat Pay v3 cryptography, merchant side (docs/protocols/wechatpay.md §2-§5).

- Requests: `WECHATPAY2-SHA256-RSA2048` over `METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n`,
  SHA256withRSA (PKCS#1 v1.5) with the merchant API private key.
- Responses and callbacks: `TIMESTAMP\\nNONCE\\nBODY\\n` verified with the key `Wechatpay-Serial`
  names: the platform public key when it equals the configured `PUB_KEY_ID_...` (public-key mode),
  else a platform certificate with that serial (certificate mode); skew < 5 min; and, like the
  public SDKs, only with `Wechatpay-Signature-Type: WECHATPAY2-SHA256-RSA2048`.
- Callback resources: AEAD_AES_256_GCM, key = APIv3 key, nonce/AAD as given, ciphertext ‖ tag.
"""

from __future__ import annotations

import base64
import json
import secrets
import string
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.cashier.connectors.base import InvalidSignature

AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"  # the only type real replies carry (docs/protocols/wechatpay.md §3)
NONCE_LENGTH = 32
_ALNUM = string.ascii_letters + string.digits


def nonce_str(length: int = NONCE_LENGTH) -> str:
    """32 random characters from [0-9a-zA-Z], as the official SDKs generate."""
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("merchant private key is not RSA")
    return key


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("platform public key is not RSA")
    return key


def request_message(method: str, canonical_url: str, timestamp: int, nonce: str, body: bytes) -> bytes:
    """Go: `"%s\\n%s\\n%d\\n%s\\n%s\\n"`; the body line is empty for GET."""
    return f"{method}\n{canonical_url}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"


def response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def sign_sha256_rsa(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def verify_sha256_rsa(public_key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (CryptoInvalidSignature, ValueError):
        return False
    return True


def build_authorization(
    *,
    mchid: str,
    serial_no: str,
    private_key: rsa.RSAPrivateKey,
    method: str,
    canonical_url: str,
    body: bytes,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> str:
    """The `Authorization` header value for one request (fields in the SDK's order)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce_str() if nonce is None else nonce
    signature = sign_sha256_rsa(private_key, request_message(method, canonical_url, timestamp, nonce, body))
    return (
        f'{AUTH_SCHEME} mchid="{mchid}",nonce_str="{nonce}",timestamp="{timestamp}",'
        f'serial_no="{serial_no}",signature="{signature}"'
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


class UnknownPlatformSerial(InvalidSignature):
    """`Wechatpay-Serial` names no key we hold: in certificate mode, download the certificates again."""


def verify_wechatpay_signature(
    headers: Mapping[str, str],
    body: bytes,
    *,
    public_key: rsa.RSAPublicKey | None = None,
    public_key_id: str | None = None,
    certificates: Mapping[str, rsa.RSAPublicKey] | None = None,
    clock_skew_seconds_max: int,
    now_unix: float | None = None,
) -> None:
    """Raise InvalidSignature unless the Wechatpay-* headers sign `body` with a platform key.

    The key is chosen as wechatpay-go's combined verifier does: the public key when the serial equals
    its id exactly, else the platform certificate with that serial (`certificates`, keyed by upper-case
    hex serial); an unknown serial raises UnknownPlatformSerial.
    """
    timestamp = _header(headers, "Wechatpay-Timestamp")
    nonce = _header(headers, "Wechatpay-Nonce")
    signature = _header(headers, "Wechatpay-Signature")
    serial = _header(headers, "Wechatpay-Serial")
    if not (timestamp and nonce and signature and serial):
        raise InvalidSignature("missing Wechatpay-Timestamp/Nonce/Signature/Serial header")
    signature_type = _header(headers, "Wechatpay-Signature-Type")
    if signature_type != SIGNATURE_TYPE:
        # Real replies and callbacks always carry it; the public SDKs refuse anything else (§1.3, §7).
        raise InvalidSignature(f"Wechatpay-Signature-Type {signature_type!r} is not {SIGNATURE_TYPE}")
    if public_key is not None and serial == public_key_id:
        key = public_key
    elif certificates and serial.upper() in certificates:
        key = certificates[serial.upper()]
    else:
        raise UnknownPlatformSerial(
            f"Wechatpay-Serial {serial!r} names neither the configured platform public "
            "key id nor a known platform certificate"
        )
    try:
        timestamp_unix = int(timestamp)
    except ValueError as exc:
        raise InvalidSignature("Wechatpay-Timestamp is not an integer") from exc
    now_unix = time.time() if now_unix is None else now_unix
    if abs(now_unix - timestamp_unix) >= clock_skew_seconds_max:
        raise InvalidSignature("Wechatpay-Timestamp is too far from the local clock")
    if not verify_sha256_rsa(key, response_message(timestamp, nonce, body), signature):
        raise InvalidSignature("Wechatpay-Signature does not verify")


def load_platform_certificate(pem: str, *, now: datetime | None = None) -> tuple[str, rsa.RSAPublicKey]:
    """(upper-case hex serial, public key) of a platform certificate valid now; ValueError otherwise."""
    certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
    now = now or datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise ValueError("platform certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("platform certificate key is not RSA")
    return f"{certificate.serial_number:X}", key


def certificate_not_after(pem: str) -> float:
    return x509.load_pem_x509_certificate(pem.encode("ascii")).not_valid_after_utc.timestamp()


def rsa_oaep_encrypt(public_key: rsa.RSAPublicKey, text: str) -> str:
    """Sensitive request fields (a receiver's or payee's name): RSA-OAEP (SHA-1, MGF1-SHA1), Base64 (§1.4)."""
    sealed = public_key.encrypt(
        text.encode("utf-8"), padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    )
    return base64.b64encode(sealed).decode("ascii")


def aes_gcm_decrypt(apiv3_key: str, *, nonce: str, associated_data: str, ciphertext_b64: str) -> bytes:
    """Decrypt a callback resource; a wrong key or tampered data raises InvalidSignature."""
    try:
        sealed = base64.b64decode(ciphertext_b64, validate=True)
        return AESGCM(apiv3_key.encode("utf-8")).decrypt(
            nonce.encode("utf-8"), sealed, associated_data.encode("utf-8") if associated_data else None
        )
    except (InvalidTag, ValueError) as exc:
        raise InvalidSignature("resource decryption failed (wrong APIv3 key or tampered ciphertext)") from exc


def open_callback(body: bytes, apiv3_key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(envelope, decrypted resource) of a callback whose signature was already verified; a body that is signed
    but malformed raises InvalidSignature like a forgery (nothing may change on it)."""
    try:
        envelope = json.loads(body)
        resource = envelope["resource"]
        plaintext = aes_gcm_decrypt(
            apiv3_key,
            nonce=str(resource["nonce"]),
            associated_data=str(resource.get("associated_data") or ""),
            ciphertext_b64=str(resource["ciphertext"]),
        )
        data = json.loads(plaintext)
        if not isinstance(envelope, dict) or not isinstance(data, dict):
            raise ValueError("the envelope and its resource are JSON objects")
        return envelope, data
    except InvalidSignature:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidSignature(f"callback body is malformed: {exc}") from exc


def aes_gcm_encrypt(apiv3_key: str, *, nonce: str, associated_data: str, plaintext: bytes) -> str:
    """The inverse of aes_gcm_decrypt (tests and tooling); returns Base64(ciphertext ‖ tag)."""
    sealed = AESGCM(apiv3_key.encode("utf-8")).encrypt(
        nonce.encode("utf-8"), plaintext, associated_data.encode("utf-8") if associated_data else None
    )
    return base64.b64encode(sealed).decode("ascii")


def jsapi_pay_params(
    *,
    appid: str,
    prepay_id: str,
    private_key: rsa.RSAPrivateKey,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Parameters for `WeixinJSBridge.invoke('getBrandWCPayRequest', ...)` / `wx.requestPayment`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce_str() if nonce is None else nonce
    package = f"prepay_id={prepay_id}"
    message = f"{appid}\n{timestamp}\n{nonce}\n{package}\n".encode()
    return {
        "appId": appid,
        "timeStamp": str(timestamp),
        "nonceStr": nonce,
        "package": package,
        "signType": "RSA",
        "paySign": sign_sha256_rsa(private_key, message),
    }


def app_pay_params(
    *,
    appid: str,
    partnerid: str,
    prepay_id: str,
    private_key: rsa.RSAPrivateKey,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Parameters for the WeChat app SDK `PayReq`; `sign` over `appid\\ntimestamp\\nnoncestr\\nprepayid\\n`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce_str() if nonce is None else nonce
    message = f"{appid}\n{timestamp}\n{nonce}\n{prepay_id}\n".encode()
    return {
        "appid": appid,
        "partnerid": partnerid,
        "prepayid": prepay_id,
        "package": "Sign=WXPay",
        "noncestr": nonce,
        "timestamp": str(timestamp),
        "sign": sign_sha256_rsa(private_key, message),
    }
