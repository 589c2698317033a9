"""Sealed session cookies and CSRF tokens: the web process keeps no state of its own.

A session is a small JSON document sealed with AES-256-GCM (`cryptography`) under `session_key`, with the
cookie's name as associated data, so it can be neither read nor forged nor moved to another cookie; any
replica opens it. It holds the gateway user token of the signed-in user (the only credential the page
uses), the idle and absolute deadlines, and the session's CSRF token. Revocation: signing out revokes the
user token at the gateway, so a copied cookie stops working at once.

CSRF: every form carries the session's token (session-bound); before a session exists (the sign-in form)
a double-submit cookie is used. Both are compared in constant time.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SESSION_COOKIE = "juhe_session"
CSRF_COOKIE = "juhe_csrf"  # double-submit, before sign-in
LANG_COOKIE = "juhe_lang"
NONCE_BYTES = 12
CSRF_BYTES = 32


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    token: str  # the gateway user token (Bearer utk_…)
    expires_epoch: float  # absolute: the user token's expiry
    idle_until_epoch: float
    csrf: str

    def alive(self, now: float) -> bool:
        return now < self.expires_epoch and now < self.idle_until_epoch

    def touched(self, now: float, idle_seconds: int) -> Session:
        return Session(
            self.user_id, self.token, self.expires_epoch, min(now + idle_seconds, self.expires_epoch), self.csrf
        )


def new_csrf() -> str:
    return secrets.token_urlsafe(CSRF_BYTES)


def csrf_matches(sent: str | None, expected: str | None) -> bool:
    return bool(sent) and bool(expected) and hmac.compare_digest(str(sent), str(expected))


class Sealer:
    def __init__(self, key_b64: str) -> None:
        key = base64.b64decode(key_b64)
        if len(key) != 32:
            raise ValueError("session_key must be 32 bytes, base64")
        self._aead = AESGCM(key)

    def seal(self, session: Session) -> str:
        nonce = os.urandom(NONCE_BYTES)
        data = json.dumps(asdict(session), separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, data, SESSION_COOKIE.encode())).decode()

    def open(self, cookie: str | None, *, now: float | None = None) -> Session | None:
        """The live session in `cookie`, or None (absent, tampered, sealed under another key, or expired)."""
        if not cookie:
            return None
        try:
            raw = base64.urlsafe_b64decode(cookie.encode())
            data = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], SESSION_COOKIE.encode())
            session = Session(**json.loads(data))
        except (InvalidTag, ValueError, TypeError):
            return None
        return session if session.alive(time.time() if now is None else now) else None
