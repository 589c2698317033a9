"""Request signing, byte for byte what the gateway verifies (see the gateway README).

    Authorization: JUHE-HMAC-SHA256 key_id=…,timestamp=…,nonce=…,signature=<base64>

String to sign: algorithm, key id, METHOD, path+query as sent, timestamp, nonce, hex SHA-256 of the
body, each followed by "\\n".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

HMAC_ALGORITHM = "JUHE-HMAC-SHA256"
RSA_ALGORITHM = "JUHE-RSA-SHA256"


def string_to_sign(
    *, algorithm: str, key_id: str, method: str, path_and_query: str, timestamp: int, nonce: str, body: bytes
) -> bytes:
    lines = (algorithm, key_id, method.upper(), path_and_query, str(timestamp), nonce, hashlib.sha256(body).hexdigest())
    return "".join(f"{line}\n" for line in lines).encode()


def new_nonce() -> str:
    return secrets.token_urlsafe(18)  # 24 characters of [A-Za-z0-9_-]


class Signer:
    """Signs with the key's HMAC secret, or with an RSA private key (PEM) when one is given."""

    def __init__(self, key_id: str, secret: str | None = None, *, rsa_private_key_pem: str | bytes | None = None):
        if secret is None and rsa_private_key_pem is None:
            raise ValueError("need the key's secret or an RSA private key")
        self.key_id = key_id
        self._secret = secret
        self._rsa: Any = None
        if rsa_private_key_pem is not None:
            from cryptography.hazmat.primitives import serialization  # optional dependency: juhe-sdk[rsa]

            pem = rsa_private_key_pem.encode() if isinstance(rsa_private_key_pem, str) else rsa_private_key_pem
            self._rsa = serialization.load_pem_private_key(pem, password=None)

    @property
    def algorithm(self) -> str:
        return RSA_ALGORITHM if self._rsa is not None else HMAC_ALGORITHM

    def authorization(
        self, method: str, path_and_query: str, body: bytes, *, timestamp: int | None = None, nonce: str | None = None
    ) -> str:
        timestamp = int(time.time()) if timestamp is None else timestamp
        nonce = nonce or new_nonce()
        message = string_to_sign(
            algorithm=self.algorithm,
            key_id=self.key_id,
            method=method,
            path_and_query=path_and_query,
            timestamp=timestamp,
            nonce=nonce,
            body=body,
        )
        if self._rsa is not None:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import padding

            raw = self._rsa.sign(message, padding.PKCS1v15(), hashes.SHA256())
        else:
            assert self._secret is not None
            raw = hmac.new(self._secret.encode(), message, hashlib.sha256).digest()
        signature = base64.b64encode(raw).decode()
        return f"{self.algorithm} key_id={self.key_id},timestamp={timestamp},nonce={nonce},signature={signature}"
