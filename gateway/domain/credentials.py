"""Credentials at rest: generation, hashing, and sealing with AES-256-GCM.

Two kinds of secret, stored two ways:
- Bearer secrets (platform admin keys, end-user tokens) are only ever *compared*, so only their
  SHA-256 is stored. They are 256 random bits, so a fast hash is enough (no password stretching needed:
  there is nothing to brute-force).
- Merchant HMAC secrets and webhook secrets must be *used*: verifying an HMAC signature, or signing a
  webhook, needs the secret itself, and a hash cannot give it back. They are therefore sealed with
  AES-256-GCM under `credentials_encryption_key` from settings (kept outside the database), with the
  row's id as associated data so a sealed value copied onto another row does not open. The sealer is
  `libs.common.sealing.Sealer` (one scheme for every service): a key ring whose values name their key, so the
  key can be rotated (docs/operations.md §Sealing keys).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from libs.common.ids import new_id
from libs.common.modes import Mode
from libs.common.sealing import Sealer as CredentialSealer
from libs.common.sealing import SealError as CredentialSealError

SECRET_BYTES = 32

__all__ = ["CredentialSealError", "CredentialSealer"]


def new_secret(prefix: str) -> str:
    """`sk_…`, `whsec_…`: url-safe, 256 random bits."""
    return f"{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"


def new_key_id(mode: Mode) -> str:
    """`key_test_<32 hex>` / `key_live_<32 hex>`: the mode is readable in the id, as in the secret
    (`sk_test_…`), so a developer sees at a glance which key is in a config (docs/test-mode.md)."""
    head, _, tail = new_id("key").partition("_")
    return f"{head}_{mode}_{tail}"


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def secret_matches(secret: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def bearer_matches(authorization: str | None, stored_hash: bytes) -> bool:
    """`Authorization: Bearer <secret>` whose secret hashes to `stored_hash` (compared in constant time)."""
    scheme, _, token = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and secret_matches(token.strip(), stored_hash)
