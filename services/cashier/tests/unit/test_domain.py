"""Unit tests of the cashier domain: state machines, outcome decisions, refund limits, webhook signing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from libs.common.errors import Problem
from services.cashier.domain import errors
from services.cashier.domain.payments import (
    AttemptStatus,
    Outcome,
    PaymentStatus,
    can_move_attempt,
    can_move_payment,
    decide_outcome,
    out_trade_no_of,
    poll_delay_seconds,
    request_fingerprint,
    resolve_expire_at,
)
from services.cashier.domain.refunds import RefundStatus, can_move_refund, check_refund, refundable_minor
from services.cashier.domain.webhooks import retry_delay_seconds, signature_header, verify_signature

P = PaymentStatus
A = AttemptStatus


def test_payment_lifecycle_follows_design_section_5() -> None:
    assert can_move_payment(P.CREATED, P.PROCESSING)
    assert can_move_payment(P.PROCESSING, P.SUCCEEDED)
    assert can_move_payment(P.PROCESSING, P.FAILED)
    assert can_move_payment(P.PROCESSING, P.CLOSED)
    assert can_move_payment(P.CLOSED, P.SUCCEEDED)  # late success
    assert not can_move_payment(P.SUCCEEDED, P.CLOSED)
    assert not can_move_payment(P.SUCCEEDED, P.FAILED)
    assert not can_move_payment(P.CLOSED, P.PROCESSING)
    assert not can_move_payment(P.PROCESSING, P.CREATED)


def test_attempt_lifecycle() -> None:
    assert can_move_attempt(A.CREATED, A.PROCESSING)
    assert can_move_attempt(A.CREATED, A.FAILED)
    assert not can_move_attempt(A.CREATED, A.SUCCEEDED)
    assert not can_move_attempt(A.SUCCEEDED, A.CLOSED)


def test_success_moves_processing_payment_once() -> None:
    first = decide_outcome(
        payment_status=P.PROCESSING, attempt_status=A.PROCESSING, is_current_attempt=True, outcome=Outcome.SUCCEEDED
    )
    assert first.attempt_to is A.SUCCEEDED and first.payment_to is P.SUCCEEDED and not first.late_success
    again = decide_outcome(
        payment_status=P.SUCCEEDED, attempt_status=A.SUCCEEDED, is_current_attempt=True, outcome=Outcome.SUCCEEDED
    )
    assert not again.changes_anything


def test_success_after_close_is_applied_and_flagged() -> None:
    decision = decide_outcome(
        payment_status=P.CLOSED, attempt_status=A.CLOSED, is_current_attempt=True, outcome=Outcome.SUCCEEDED
    )
    assert decision.payment_to is P.SUCCEEDED and decision.attempt_to is A.SUCCEEDED and decision.late_success


def test_success_on_an_abandoned_attempt_after_failover_is_a_late_success() -> None:
    # Attempt 1 timed out (failed) and the payment failed entirely; the channel then reports it paid.
    decision = decide_outcome(
        payment_status=P.FAILED, attempt_status=A.FAILED, is_current_attempt=False, outcome=Outcome.SUCCEEDED
    )
    assert decision.payment_to is P.SUCCEEDED and decision.late_success


def test_second_attempt_paid_while_payment_already_succeeded_is_a_duplicate() -> None:
    decision = decide_outcome(
        payment_status=P.SUCCEEDED, attempt_status=A.FAILED, is_current_attempt=False, outcome=Outcome.SUCCEEDED
    )
    assert decision.payment_to is None and decision.attempt_to is A.SUCCEEDED and decision.duplicate_success


def test_close_and_failure_only_touch_a_live_current_attempt() -> None:
    closed = decide_outcome(
        payment_status=P.PROCESSING, attempt_status=A.PROCESSING, is_current_attempt=True, outcome=Outcome.CLOSED
    )
    assert closed.attempt_to is A.CLOSED and closed.payment_to is P.CLOSED
    stale = decide_outcome(
        payment_status=P.SUCCEEDED, attempt_status=A.SUCCEEDED, is_current_attempt=True, outcome=Outcome.CLOSED
    )
    assert not stale.changes_anything
    other = decide_outcome(
        payment_status=P.PROCESSING, attempt_status=A.PROCESSING, is_current_attempt=False, outcome=Outcome.FAILED
    )
    assert other.attempt_to is A.FAILED and other.payment_to is None


def test_refund_lifecycle_and_limits() -> None:
    assert can_move_refund(RefundStatus.PENDING, RefundStatus.SUCCEEDED)
    assert not can_move_refund(RefundStatus.SUCCEEDED, RefundStatus.FAILED)
    assert refundable_minor(amount_minor=100, refund_reserved_minor=80) == 20
    check_refund(payment_status=P.SUCCEEDED, amount_minor=100, refund_reserved_minor=80, refund_minor=20)
    with pytest.raises(Problem) as exc:
        check_refund(payment_status=P.SUCCEEDED, amount_minor=100, refund_reserved_minor=80, refund_minor=30)
    assert exc.value.spec is errors.REFUND_EXCEEDS_REMAINING and exc.value.extensions["refundable_minor"] == 20
    with pytest.raises(Problem) as exc:
        check_refund(payment_status=P.PROCESSING, amount_minor=100, refund_reserved_minor=0, refund_minor=1)
    assert exc.value.spec is errors.PAYMENT_NOT_REFUNDABLE


def test_request_fingerprint_ignores_key_order_and_sees_values() -> None:
    assert request_fingerprint({"a": 1, "b": "x"}) == request_fingerprint({"b": "x", "a": 1})
    assert request_fingerprint({"a": 1}) != request_fingerprint({"a": 2})


def test_expiry_resolution() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert resolve_expire_at(now=now, requested=None, default_seconds=60, max_seconds=600) == now + timedelta(
        seconds=60
    )
    with pytest.raises(Problem):
        resolve_expire_at(now=now, requested=now - timedelta(seconds=1), default_seconds=60, max_seconds=600)
    with pytest.raises(Problem):
        resolve_expire_at(now=now, requested=now + timedelta(seconds=601), default_seconds=60, max_seconds=600)


def test_poll_backoff_is_bounded() -> None:
    delays = [poll_delay_seconds(n, initial_seconds=1, max_seconds=30) for n in range(10)]
    assert delays[:4] == [1, 2, 4, 8] and max(delays) == 30


def test_out_trade_no_fits_wechat_limits() -> None:
    value = out_trade_no_of("att_0193c1a2b3c4d5e6f708192a3b4c5d6e")
    assert len(value) == 32 and value.isalnum()


# HMAC-SHA256 known vector: secret "whsec_test", t=1700000000, body {"a":1}
KNOWN_SIGNATURE = "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"


def test_webhook_signature_known_vector_and_verification() -> None:
    header = signature_header("whsec_test", 1700000000, b'{"a":1}')
    assert header == KNOWN_SIGNATURE
    assert verify_signature("whsec_test", header, b'{"a":1}', now=1700000010)
    assert not verify_signature("whsec_test", header, b'{"a":2}', now=1700000010)
    assert not verify_signature("other", header, b'{"a":1}', now=1700000010)
    assert not verify_signature("whsec_test", header, b'{"a":1}', now=1700000000 + 301)


def test_webhook_retry_schedule_runs_out() -> None:
    schedule = (1.0, 2.0, 4.0)
    assert retry_delay_seconds(1, schedule_seconds=schedule, scale=0.5) == 0.5
    assert retry_delay_seconds(3, schedule_seconds=schedule, scale=1.0) == 4.0
    assert retry_delay_seconds(4, schedule_seconds=schedule, scale=1.0) is None


def test_error_catalogue_codes_are_unique_snake_case() -> None:
    codes = [spec.code for spec in errors.ERRORS]
    assert len(codes) == len(set(codes))
    assert all(code.islower() and " " not in code for code in codes)
