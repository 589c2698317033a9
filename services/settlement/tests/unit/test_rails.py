"""Payout rails as pure rules: the channel transfer number of a payout and the cashier's answers in the bank's words."""

from __future__ import annotations

import httpx
import pytest

from libs.common.ids import new_id
from services.settlement.clients.bank import BankRefused, BankUnavailable
from services.settlement.clients.rails import ChannelRails, transfer_no


def test_the_transfer_number_fits_wechat_and_stays_unique() -> None:
    ids = [new_id("po") for _ in range(200)] + [new_id("wop") for _ in range(200)]
    numbers = [transfer_no(i) for i in ids]
    assert all(5 <= len(n) <= 32 and n.isascii() and n.isalnum() for n in numbers)
    assert len(set(numbers)) == len(ids)
    assert transfer_no("wd_usr_1") == "wdusr1"  # short ids keep every letter and digit


def _answer(status_code: int, body: dict[str, object]) -> dict[str, object]:
    return ChannelRails._answer(httpx.Response(status_code, json=body))


@pytest.mark.parametrize(
    ("channel_status", "fail_reason", "status", "failure"),
    [
        ("succeeded", None, "SUCCEEDED", None),
        ("failed", "PAYEE_ACCOUNT_ABNORMAL", "FAILED", "PAYEE_ACCOUNT_ABNORMAL"),
        ("cancelled", "OVERDUE_CLOSE", "FAILED", "OVERDUE_CLOSE"),
        ("cancelled", None, "FAILED", "transfer_cancelled"),
        ("waiting_user", None, "WAITING_USER", None),
        ("pending", None, "PROCESSING", None),
        ("something_new", None, "PROCESSING", None),  # tolerant: ask again, never guess
    ],
)
def test_channel_answers_in_the_banks_words(
    channel_status: str, fail_reason: str | None, status: str, failure: str | None
) -> None:
    answer = _answer(
        200, {"status": channel_status, "fail_reason": fail_reason, "channel_transfer_no": "T1", "user_action": None}
    )
    assert (answer["status"], answer["failure_code"], answer["bank_ref"]) == (status, failure, "T1")


def test_refusals_are_final_and_outages_are_retried() -> None:
    with pytest.raises(BankRefused) as refused:
        _answer(402, {"code": "channel_refused", "detail": "alipay: PAYEE_NOT_EXIST"})
    assert refused.value.code == "CHANNEL_REFUSED"
    for status_code in (503, 500, 429):
        with pytest.raises(BankUnavailable):
            _answer(status_code, {"code": "channel_unavailable"})
