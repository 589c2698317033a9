"""Secrets at rest that must be read back (HMAC secrets, webhook signing secrets, stored responses carrying them):
sealed with AES-256-GCM under a key from settings, kept outside the database.

Why a key ring: a key must be rotatable without losing what the old key sealed. Every sealed value names the
key that sealed it (a short key id in clear in its header), new values are sealed with the current key, and
retired keys stay in settings only to open old values until those are re-sealed or expire (docs/operations.md
§Sealing keys). The row's id is the associated data, so a sealed value copied onto another row does not open.

Layout: version 2 = b"\\x02" + len(key_id) (1 byte) + key_id (ASCII) + 12-byte nonce + ciphertext+tag.
Version 1 (b"\\x01" + nonce + ciphertext, written before key ids) is still opened: it names no key, so each
key of the ring is tried (at most a few; the GCM tag tells the right one).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

GCM_NONCE_BYTES = 12
KEY_BYTES = 32
KEY_ID_LENGTH_MAX = 32
DEFAULT_KEY_ID = "k1"
SEAL_V1 = b"\x01"
SEAL_V2 = b"\x02"


class SealError(Exception):
    """A sealed value did not open: unknown or wrong key, tampered data, or sealed for another row."""


def _aead(key_b64: str) -> AESGCM:
    key = base64.b64decode(key_b64)
    if len(key) != KEY_BYTES:
        raise ValueError("a sealing key must be 32 bytes, base64-encoded")
    return AESGCM(key)


def new_sealing_key() -> str:
    """A fresh key, as settings take it (32 random bytes, base64): for generators and rotations."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


class Sealer:
    """Seals with the current key (`key_id`); opens with whichever key of the ring a value names."""

    def __init__(self, key_b64: str, *, key_id: str = DEFAULT_KEY_ID, retired: Mapping[str, str] | None = None):
        if not key_id or len(key_id) > KEY_ID_LENGTH_MAX or not key_id.isascii() or not key_id.isprintable():
            raise ValueError(f"a sealing key id is 1-{KEY_ID_LENGTH_MAX} printable ASCII characters")
        if key_id in (retired or {}):
            raise ValueError(f"sealing key id {key_id!r} is both current and retired")
        self.key_id = key_id
        self._keys: dict[str, AESGCM] = {key_id: _aead(key_b64)}
        self._keys.update({kid: _aead(value) for kid, value in (retired or {}).items()})
        self._header = SEAL_V2 + bytes([len(key_id)]) + key_id.encode()

    @classmethod
    def from_settings(cls, key: SecretStr, *, key_id: str, retired: Mapping[str, SecretStr]) -> Sealer:
        """From a service's settings: its current key, that key's id, and the retired keys by id."""
        return cls(key.get_secret_value(), key_id=key_id, retired={k: v.get_secret_value() for k, v in retired.items()})

    def seal_bytes(self, plaintext: bytes, *, row_id: str) -> bytes:
        nonce = os.urandom(GCM_NONCE_BYTES)
        return self._header + nonce + self._keys[self.key_id].encrypt(nonce, plaintext, row_id.encode())

    def seal(self, plaintext: str, *, row_id: str) -> bytes:
        return self.seal_bytes(plaintext.encode(), row_id=row_id)

    def open_bytes(self, sealed: bytes, *, row_id: str) -> bytes:
        sealed = bytes(sealed)
        if sealed[:1] == SEAL_V2 and len(sealed) > 2:
            end = 2 + sealed[1]
            kid = sealed[2:end].decode("ascii", "replace")
            aead = self._keys.get(kid)
            if aead is None:
                raise SealError(f"sealed value of {row_id} names key {kid!r}, which is not configured")
            candidates = [aead]
            body = sealed[end:]
        elif sealed[:1] == SEAL_V1:
            candidates, body = list(self._keys.values()), sealed[1:]
        else:
            raise SealError("unknown seal version")
        nonce, ciphertext = body[:GCM_NONCE_BYTES], body[GCM_NONCE_BYTES:]
        for candidate in candidates:
            try:
                return candidate.decrypt(nonce, ciphertext, row_id.encode())
            except InvalidTag:
                continue
        raise SealError(f"sealed value of {row_id} does not open")

    def open(self, sealed: bytes, *, row_id: str) -> str:
        return self.open_bytes(sealed, row_id=row_id).decode()

    def key_id_of(self, sealed: bytes) -> str | None:
        """The key a value was sealed with (None: a version-1 value, which names none): re-seal what is not
        sealed with the current key before dropping a retired one."""
        sealed = bytes(sealed)
        return sealed[2 : 2 + sealed[1]].decode("ascii", "replace") if sealed[:1] == SEAL_V2 else None

    def needs_reseal(self, sealed: bytes) -> bool:
        return self.key_id_of(sealed) != self.key_id
