"""Payment PIN rules without I/O: weak PINs, argon2id hashes, the lockout arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.domain.pins import PIN_TRIES_MAX, PinState, hash_pin, is_too_simple, pin_matches

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize("pin", ["000000", "111111", "123456", "456789", "987654", "543210"])
def test_repeated_digits_and_runs_are_too_simple(pin: str) -> None:
    assert is_too_simple(pin)


@pytest.mark.parametrize("pin", ["135790", "246813", "112233", "123457", "909090"])
def test_other_pins_are_accepted(pin: str) -> None:
    assert not is_too_simple(pin)


def test_hash_is_argon2id_salted_and_verifies_only_the_pin() -> None:
    first, second = hash_pin("135790"), hash_pin("135790")
    assert first.startswith("$argon2id$") and first != second  # salted
    assert pin_matches("135790", first) and not pin_matches("135791", first)
    assert not pin_matches("135790", "not a hash")


def test_the_fifth_wrong_try_in_a_row_locks_and_the_count_starts_again() -> None:
    state = PinState(0, None)
    for expected_left in range(PIN_TRIES_MAX - 1, 0, -1):
        state = state.after_failure(NOW, lockout_seconds=3600)
        assert not state.locked(NOW) and state.tries_left == expected_left
    state = state.after_failure(NOW, lockout_seconds=3600)
    assert state.locked(NOW) and state.locked_until == NOW + timedelta(hours=1)
    assert not state.locked(NOW + timedelta(hours=1)) and state.failed_count == 0
