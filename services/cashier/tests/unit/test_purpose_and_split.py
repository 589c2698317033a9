"""The split check and purpose rules (docs/contracts.md §1) as pure functions: who may create which purpose,
coherent purposes, explicit splits."""

from __future__ import annotations

from services.cashier.domain.payments import (
    SPLIT_ENTRIES_MAX,
    PaymentPurpose,
    PaymentScene,
    may_create_purpose,
    purpose_problem,
    split_problem,
)
from services.cashier.flows.payments import PaymentDraft

TOPUP = PaymentPurpose.WALLET_TOPUP


def test_only_the_ledger_or_the_platform_may_create_a_topup() -> None:
    assert may_create_purpose(TOPUP, service="ledger", platform=None)
    assert may_create_purpose(TOPUP, service=None, platform="plt_1")
    assert not may_create_purpose(TOPUP, service=None, platform=None)
    assert not may_create_purpose(TOPUP, service="routing", platform=None)
    assert may_create_purpose(PaymentPurpose.PAYMENT, service=None, platform=None)


def test_purpose_must_fit_the_request() -> None:
    qr = PaymentScene.NATIVE_QR
    assert purpose_problem(TOPUP, wallet_holder_id="usr_1", scene=qr, has_split=False) is None
    assert purpose_problem(TOPUP, wallet_holder_id=None, scene=qr, has_split=False)
    assert purpose_problem(TOPUP, wallet_holder_id="usr_1", scene=PaymentScene.WALLET, has_split=False)
    assert purpose_problem(TOPUP, wallet_holder_id="usr_1", scene=qr, has_split=True)
    assert purpose_problem(PaymentPurpose.PAYMENT, wallet_holder_id="usr_1", scene=qr, has_split=False)
    assert purpose_problem(PaymentPurpose.PAYMENT, wallet_holder_id=None, scene=qr, has_split=True) is None


def test_split_lines_are_unique_positive_and_within_the_amount() -> None:
    assert split_problem(100, [("a", 60), ("b", 40)]) is None
    assert split_problem(100, [("a", 60), ("b", 41)])
    assert split_problem(100, [("a", 10), ("a", 10)])
    assert split_problem(100, [("a", 0)])
    assert split_problem(100, [])
    assert split_problem(10**6, [(f"r{i}", 1) for i in range(SPLIT_ENTRIES_MAX)]) is None
    assert split_problem(10**6, [(f"r{i}", 1) for i in range(SPLIT_ENTRIES_MAX + 1)])


def _draft(**overrides: object) -> PaymentDraft:
    values: dict[str, object] = dict(
        merchant_order_no="o1",
        amount_minor=100,
        currency="CNY",
        description="d",
        scene=PaymentScene.NATIVE_QR,
        payer={},
        expire_at=None,
        notify_url=None,
        return_url=None,
        metadata={},
        preferred_channels=(),
        excluded_channels=(),
    )
    values.update(overrides)
    return PaymentDraft(**values)  # type: ignore[arg-type]


def test_new_fields_change_the_fingerprint_only_when_set() -> None:
    # Payments stored before the split check (docs/contracts.md §1) keep their fingerprint (a replay of the same
    # body still matches).
    legacy_fields = (
        "merchant_order_no",
        "amount_minor",
        "currency",
        "description",
        "scene",
        "payer",
        "expire_at",
        "notify_url",
        "return_url",
        "metadata",
        "preferred_channels",
        "excluded_channels",
    )
    from services.cashier.domain.payments import request_fingerprint

    plain = _draft()
    assert plain.fingerprint() == request_fingerprint({k: getattr(plain, k) for k in legacy_fields})
    assert _draft(profit_sharing=True).fingerprint() != plain.fingerprint()
    assert _draft(split=(("a", 1),)).fingerprint() != _draft(split=(("a", 2),)).fingerprint()
    assert _draft(purpose=TOPUP, wallet_holder_id="u1").fingerprint() != plain.fingerprint()


def test_profit_sharing_status_words() -> None:
    from services.cashier.domain.profit_sharing import ShareStatus, line_status, order_status

    assert line_status("wechatpay", "SUCCESS") is ShareStatus.SUCCEEDED
    assert line_status("wechatpay", "CLOSED") is ShareStatus.FAILED
    assert line_status("wechatpay", "PENDING") is ShareStatus.PROCESSING
    assert line_status("alipay", "FAIL") is ShareStatus.FAILED
    assert line_status("alipay", "success") is ShareStatus.SUCCEEDED
    assert line_status("alipay", "SOMETHING_NEW") is ShareStatus.PROCESSING  # never guess an outcome

    ok, failed, pending = ShareStatus.SUCCEEDED, ShareStatus.FAILED, ShareStatus.PROCESSING
    assert order_status([ok, ok]) is ok
    assert order_status([ok, failed]) is failed
    assert order_status([ok, pending]) is pending
    assert order_status([ok, ok], channel_final=False) is pending  # WeChat state still PROCESSING
    assert order_status([]) is pending
