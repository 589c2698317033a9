"""RSA key pairs for sandboxes: generated once and kept as PEM files under the sandbox data dir.

A sandbox plays the channel, so it signs with its own key; the connector under test is configured
with the matching public key. Keeping the key on disk means a restarted sandbox still verifies
against the public key a developer already pasted into their config.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

RSA_KEY_SIZE_BITS = 2048
RSA_PUBLIC_EXPONENT = 65537
PARSED_KEYS_MAX = 1024  # merchants' public keys parsed and kept by PEM text (load_public_key_pem)


@dataclass(frozen=True, slots=True)
class KeyPair:
    private_key: rsa.RSAPrivateKey

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    @property
    def private_pem(self) -> str:
        """PKCS#8 PEM, the format WeChat Pay and Alipay tooling hand to merchants."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    @property
    def public_pem(self) -> str:
        """SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`)."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")


def generate_rsa_key_pair() -> KeyPair:
    return KeyPair(rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=RSA_KEY_SIZE_BITS))


def load_or_create_rsa_key(directory: Path, name: str) -> KeyPair:
    """Load `<directory>/<name>.pem`, or generate and store it (mode 0600) on first use."""
    path = directory / f"{name}.pem"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path} is not an RSA private key")
        return KeyPair(key)
    pair = generate_rsa_key_pair()
    tmp = path.with_suffix(".pem.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(pair.private_pem)
    tmp.replace(path)  # atomic: a crash never leaves half a key behind
    return pair


def load_public_key_pem(pem: str) -> rsa.RSAPublicKey:
    """Parse a merchant-supplied public key (SubjectPublicKeyInfo or PKCS#1 PEM).

    Parsed keys are kept by their PEM text: a channel checks every request against the key its merchant record
    holds *now* (read per request), and a replaced key is other text, so nothing stale is ever served; only the
    parsing (a few % of a sandbox's CPU per payment, docs/performance.md, "Sixth pass") is done once."""
    return _parse_public_key_pem(pem)


@functools.lru_cache(maxsize=PARSED_KEYS_MAX)
def _parse_public_key_pem(pem: str) -> rsa.RSAPublicKey:
    data = pem.encode("ascii")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        from cryptography.x509 import load_pem_x509_certificate

        key = load_pem_x509_certificate(data).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key
