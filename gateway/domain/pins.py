"""Payment PINs: the rules (format, weak PINs, lockout) and argon2id hashing. No I/O.

A PIN has six digits, so its space is 10^6: what protects it is the lockout (`PIN_TRIES_MAX` wrong tries in a
row lock it for `lockout_seconds`), not the hash. argon2id (RFC 9106, argon2-cffi's defaults) still makes a
stolen table costly to search. The PIN itself is never stored, logged or returned.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PIN_TRIES_MAX = 5
PIN_PATTERN = r"^[0-9]{6}$"
_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile


def is_too_simple(pin: str) -> bool:
    """One digit repeated (111111) or a run up or down (123456, 987654): the first PINs anyone tries."""
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    return len(steps) == 1 and steps <= {-1, 0, 1}


def hash_pin(pin: str) -> str:
    return _HASHER.hash(pin)


def pin_matches(pin: str, pin_hash: str) -> bool:
    try:
        return _HASHER.verify(pin_hash, pin)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class PinState:
    failed_count: int
    locked_until: datetime | None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now

    def after_failure(self, now: datetime, lockout_seconds: int) -> PinState:
        """One more wrong try; the `PIN_TRIES_MAX`th locks, and the count starts again after the lock."""
        failed = self.failed_count + 1
        if failed >= PIN_TRIES_MAX:
            return PinState(0, now + timedelta(seconds=lockout_seconds))
        return PinState(failed, None)

    @property
    def tries_left(self) -> int:
        return PIN_TRIES_MAX - self.failed_count
