"""A top-up refunded at its channel (docs/marketing.md "Top-up refunds"): the cashier's hold on the holder's cash
balance (`POST /v1/wallet/top-up-refunds`) never takes money the holder spent, is exact under concurrent
refunds, and is posted on `refund.succeeded` / voided on `refund.failed` once, whatever the order and repeats
of those events and of marketing's bonus revocation; a hold that ran out is posted late; the ledger verifies."""

from __future__ import annotations

import asyncio
from typing import Any

from libs.common.events import Envelope
from services.ledger.tests.integration.test_cashier_consumer import accounts_of, eventually, publish
from services.ledger.tests.integration.test_wallet_bonus import bonus_event
from services.ledger.tests.integration.test_wallet_bonus import posted as subaccount_posted
from services.ledger.tests.integration.test_wallet_topup import TOPUP_MERCHANT, open_person, top_up_paid

HOLDER = "usr_bonus_1"  # test_wallet_bonus.bonus_event's holder
HOLDS = "/v1/wallet/top-up-refunds"


def refund_event(kind: str, refund_id: str, amount_minor: int) -> Envelope:
    data = {
        "refund_id": refund_id,
        "payment_id": "pay_tr_1",
        "merchant_id": TOPUP_MERCHANT,
        "status": kind,
        "amount_minor": amount_minor,
        "currency": "CNY",
        "channel": "wechatpay",
        "scene": "native_qr",
        "payment_amount_minor": 10_000,
        "payment_fee_minor": 25,
        "payment_platform_fee_minor": 0,
        "payment_refunded_minor": amount_minor,
    }
    return Envelope(type=f"refund.{kind}", source="cashier", subject=refund_id, data=data)


async def hold(ledger: Any, refund_id: str, amount_minor: int, **extra: Any) -> Any:
    body = {"refund_id": refund_id, "payment_id": "pay_tr_1", "amount_minor": amount_minor, **extra}
    return await ledger.client.post(HOLDS, json=body)


async def operation(ledger: Any, kind: str, key: str) -> dict[str, Any] | None:
    r = await ledger.client.get("/v1/wallet/operations", params={"kind": kind, "idempotency_key": key})
    return dict(r.json()) if r.status_code == 200 else None


async def available(ledger: Any) -> int:
    r = await ledger.client.get(f"/v1/wallet/holders/{HOLDER}/my-wallet")
    found = {v["subaccount_type"]: v for v in r.json()["subaccounts"]}
    return int(found["balance"]["balances"]["available_balance_minor"])


async def test_top_up_refund_holds_only_unspent_cash_and_posts_once_in_any_order(
    ledger_factory: Any, platform_topics: str, juhe_infra: Any
) -> None:
    ledger = await ledger_factory(wallet_topup_merchant_id=TOPUP_MERCHANT)
    await open_person(ledger, HOLDER)
    # Not credited yet (the ledger has not seen the payment): refused, nothing held.
    early = await hold(ledger, "re_tr_0", 1_000)
    assert (early.status_code, early.json()["code"]) == (409, "top_up_not_credited"), early.text
    paid = top_up_paid("pay_tr_1", TOPUP_MERCHANT, HOLDER)  # 10000, channel fee 25
    granted = bonus_event("granted", "pay_tr_1", 1_000, topup_minor=10_000, expires_at=None)
    await publish(juhe_infra.bootstrap, platform_topics, "cashier.payments", paid)
    await publish(juhe_infra.bootstrap, platform_topics, "marketing.topups", granted)
    await eventually(lambda: _is(subaccount_posted(ledger, "bonus"), 1_000), "the bonus granted")
    await eventually(lambda: _is(subaccount_posted(ledger, "balance"), 10_000), "the top-up credited")
    spend = {"payment_id": "pay_tr_spend", "merchant_id": "mch_tr", "amount_minor": 3_000}
    spent = await ledger.client.post(f"/v1/wallet/holders/{HOLDER}/payments", json=spend)
    assert spent.status_code == 201, spent.text  # cash first: 7000 cash and the whole bonus left

    # The rule: a refund takes at most what is left of the cash balance (the holder spent the rest).
    over = await hold(ledger, "re_tr_over", 8_000)
    assert (over.status_code, over.json()["code"], over.json()["available_minor"]) == (
        409,
        "top_up_refund_exceeds_balance",
        7_000,
    ), over.text
    assert await operation(ledger, "top_up_refund", "re_tr_over") is None and await available(ledger) == 7_000

    first = await hold(ledger, "re_tr_1", 4_000)
    assert first.status_code == 201 and first.json()["status"] == "pending", first.text
    again = await hold(ledger, "re_tr_1", 4_000)
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    other = await hold(ledger, "re_tr_1", 4_001)
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")
    assert await available(ledger) == 3_000  # held: the holder cannot spend it while the channel refunds

    # Two refunds race for the last 3000: exactly one is held.
    raced = await asyncio.gather(hold(ledger, "re_tr_2", 3_000), hold(ledger, "re_tr_3", 3_000))
    assert sorted(r.status_code for r in raced) == [201, 409], [r.text for r in raced]
    winner = "re_tr_2" if raced[0].status_code == 201 else "re_tr_3"
    assert await available(ledger) == 0

    # The winner's refund fails at the channel: voided. re_tr_1 succeeds, delivered twice, then a stray failure
    # of it and marketing's revocation of the bonus (another topic, any order): posted once, revoked once.
    revoked = bonus_event("revoked", "pay_tr_1", 1_000, refund_id="re_tr_1")
    await publish(juhe_infra.bootstrap, platform_topics, "marketing.topups", revoked)
    done = refund_event("succeeded", "re_tr_1", 4_000)
    await publish(
        juhe_infra.bootstrap,
        platform_topics,
        "cashier.refunds",
        refund_event("failed", winner, 3_000),
        done,
        done,
        refund_event("failed", "re_tr_1", 4_000),
    )
    await publish(juhe_infra.bootstrap, platform_topics, "marketing.topups", revoked)
    await eventually(lambda: _status(ledger, "re_tr_1", "posted"), "the refund's hold posted")
    await eventually(lambda: _status(ledger, winner, "voided"), "the failed refund's hold voided")
    await eventually(lambda: _is(subaccount_posted(ledger, "bonus"), 0), "the bonus revoked")

    # A hold that runs out before the channel pays: posted late, as a new transfer, while the cash is there.
    late = await hold(ledger, "re_tr_4", 1_000, timeout_seconds=1)
    assert late.status_code == 201, late.text
    await eventually(lambda: _status(ledger, "re_tr_4", "expired"), "the short hold ran out")
    await publish(juhe_infra.bootstrap, platform_topics, "cashier.refunds", refund_event("succeeded", "re_tr_4", 1_000))
    await eventually(lambda: operation(ledger, "top_up_refund_late", "re_tr_4"), "the late refund posted")

    assert await subaccount_posted(ledger, "balance") == 10_000 - 3_000 - 4_000 - 1_000
    platform = {k: a["balances"]["posted_balance_minor"] for k, a in (await accounts_of(ledger, "platform")).items()}
    # §3.7 reversed: 9975 − (4000 − 10) − (1000 − 2); the channel fee 25 − 10 − 2; the bonus back in 5201.
    assert platform["channel_clearing:wechatpay"] == 4_987 and platform["channel_fee_expense:wechatpay"] == 13
    assert platform["marketing_expense:"] == 0
    assert "merchant_pending:" not in await accounts_of(ledger, TOPUP_MERCHANT)  # never §3.3
    await ledger.assert_verified()


async def _status(ledger: Any, refund_id: str, status: str) -> bool:
    found = await operation(ledger, "top_up_refund", refund_id)
    return found is not None and found["status"] == status


async def _is(value: Any, expected: int) -> bool:
    return bool(await value == expected)
