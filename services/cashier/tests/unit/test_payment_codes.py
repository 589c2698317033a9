"""付款码 rules as pure functions: which requests are coherent, which channel a code belongs to, the poll pacing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from libs.common.errors import Problem
from services.cashier.config import Settings
from services.cashier.domain.payments import PaymentScene, payment_code_problem
from services.cashier.flows import payment_codes

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


def test_auth_code_goes_with_scene_payment_code_only() -> None:
    code = PaymentScene.PAYMENT_CODE
    assert payment_code_problem(code, auth_code="134567890123456789", profit_sharing=False) is None
    assert payment_code_problem(code, auth_code=None, profit_sharing=False)
    assert payment_code_problem(code, auth_code="134567890123456789", profit_sharing=True)
    assert payment_code_problem(PaymentScene.NATIVE_QR, auth_code="134567890123456789", profit_sharing=False)
    assert payment_code_problem(PaymentScene.NATIVE_QR, auth_code=None, profit_sharing=True) is None


@pytest.mark.parametrize(
    ("auth_code", "channel"),
    [
        ("134567890123456789", "wechatpay"),
        ("104567890123456789", "wechatpay"),
        ("284567890123456789", "alipay"),
        ("2545678901234567", "alipay"),
        ("304567890123456789012345", "alipay"),
    ],
)
def test_the_codes_prefix_and_length_pick_its_channel(auth_code: str, channel: str) -> None:
    assert payment_codes.code_channel(auth_code) == channel


@pytest.mark.parametrize(
    ("auth_code", "code"),
    [
        ("6212345678901234567", "payment_code_not_supported"),  # UnionPay: no connector path yet
        ("164567890123456789", "payment_code_invalid"),  # 16… is nobody's
        ("1345678901234567", "payment_code_invalid"),  # WeChat's prefix, wrong length
        ("13456789012345678a", "payment_code_invalid"),
        ("２８４５６７８９０１２３４５６７８９", "payment_code_invalid"),  # full-width digits are not digits here
    ],
)
def test_codes_nobody_here_can_charge_are_refused_with_stable_codes(auth_code: str, code: str) -> None:
    with pytest.raises(Problem) as refused:
        payment_codes.code_channel(auth_code)
    assert refused.value.spec.code == code


@dataclass
class _Clocked:
    settings: Settings
    now: datetime

    def clock(self) -> datetime:
        return self.now


def _cashier(now: datetime) -> Any:
    return _Clocked(Settings(payment_code_poll_max_seconds=5.0), now)


def test_polls_are_capped_never_pass_the_deadline_and_stay_paced_after_it() -> None:
    deadline = NOW + timedelta(seconds=60)
    assert payment_codes.next_poll_at(_cashier(NOW), backoff_seconds=0.5, expire_at=deadline) == NOW + timedelta(
        seconds=0.5
    )
    assert payment_codes.next_poll_at(_cashier(NOW), backoff_seconds=120, expire_at=deadline) == NOW + timedelta(
        seconds=5
    )  # the general backoff is capped for a payer standing at the counter
    near = deadline - timedelta(seconds=2)
    assert payment_codes.next_poll_at(_cashier(near), backoff_seconds=120, expire_at=deadline) == deadline
    late = deadline + timedelta(seconds=10)  # a reversal to retry: not a hot loop
    assert payment_codes.next_poll_at(_cashier(late), backoff_seconds=120, expire_at=deadline) == late + timedelta(
        seconds=5
    )
