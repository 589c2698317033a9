"""Splits end to end: admin API, payment and refund events, postings in a real ledger (§3.4), exactly once."""

from __future__ import annotations

from sqlalchemy import update

from services.settlement.flows.splits import post_due_splits
from services.settlement.store.tables import split_executions
from services.settlement.tests.integration.conftest import Harness, payment_event, refund_event

PROBLEM = "application/problem+json"


async def configure(h: Harness) -> None:
    for rid, kind, holder in (
        ("mch_1", "merchant", "mch_1"),
        ("teacher", "partner", "tch_1"),
        ("platform", "platform", "platform"),
    ):
        r = await h.client.put(f"/v1/settlement/receivers/{rid}", json={"kind": kind, "holder_id": holder})
        assert r.status_code == 200, r.text
    r = await h.client.put("/v1/settlement/merchants/mch_1/fee-rate", json={"platform_fee_rate_bps": 60})
    assert r.status_code == 200
    rule = {
        "shares": [{"receiver_id": "teacher", "percent_bps": 3000}, {"receiver_id": "platform", "fixed_minor": 100}],
        "remainder_receiver_id": "mch_1",
    }
    r = await h.client.put("/v1/settlement/merchants/mch_1/split-rule", json=rule)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1


async def post_all(h: Harness) -> int:
    settings = h.context.settings
    return await post_due_splits(h.runtime.uow, h.context.ledger, settings)


async def test_bad_rules_are_problem_json(settlement_only: Harness) -> None:
    h = settlement_only
    await configure(h)
    over = {
        "shares": [{"receiver_id": "teacher", "percent_bps": 6000}, {"receiver_id": "platform", "percent_bps": 4001}],
        "remainder_receiver_id": "mch_1",
    }
    r = await h.client.put("/v1/settlement/merchants/mch_1/split-rule", json=over)
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == "shares_exceed_total"
    unknown = {"shares": [{"receiver_id": "ghost", "percent_bps": 100}], "remainder_receiver_id": "mch_1"}
    r = await h.client.put("/v1/settlement/merchants/mch_1/split-rule", json=unknown)
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == "unknown_receiver" and r.json()["receiver_id"] == "ghost"
    both = {
        "shares": [{"receiver_id": "teacher", "percent_bps": 1, "fixed_minor": 1}],
        "remainder_receiver_id": "mch_1",
    }
    assert (await h.client.put("/v1/settlement/merchants/mch_1/split-rule", json=both)).json()[
        "code"
    ] == "invalid_share"
    # the stored rule is still the first one
    stored = (await h.client.get("/v1/settlement/merchants/mch_1/split-rule")).json()
    assert stored["version"] == 1 and stored["shares"][0] == {"receiver_id": "teacher", "percent_bps": 3000}
    r = await h.client.get("/v1/settlement/merchants/mch_404/split-rule")
    assert r.status_code == 404 and r.json()["code"] == "split_rule_not_found"
    r = await h.client.get("/v1/settlement/payments/pay_nothing")
    assert r.status_code == 404 and r.json()["code"] == "payment_record_not_found"


async def test_split_fees_refunds_exactly_once(harness: Harness) -> None:
    h = harness
    await configure(h)
    succeeded = payment_event("pay_a1", amount_minor=10_000, fee_minor=25)
    await h.deliver(succeeded)
    # the same outcome reported again (poll after notification) and a late "failed" change nothing
    await h.deliver(payment_event("pay_a1", amount_minor=10_000, fee_minor=25))
    await h.deliver(payment_event("pay_a1", kind="payment.failed"))

    record = (await h.client.get("/v1/settlement/payments/pay_a1")).json()
    assert record["status"] == "succeeded"
    assert (record["channel_fee_minor"], record["platform_fee_minor"], record["margin_minor"]) == (25, 60, 35)
    [split] = record["splits"]
    # what the merchant keeps after the platform fee (9940) is split: teacher 30 %, platform 100, rest mch_1
    assert split["base_minor"] == 9940
    assert split["allocations"] == {"teacher": 2982, "platform": 100, "mch_1": 6858}
    assert split["status"] == "pending"

    assert await post_all(h) == 1
    assert await post_all(h) == 0
    assert await h.balance("tch_1", "merchant_pending") == 2982
    assert await h.balance("platform", "platform_fee_income") == 100
    assert await h.balance("mch_1", "merchant_pending") == -3082  # the cashier's §3.1 credit is not in this test

    # a crash after the ledger answered but before the row was marked: the retry gets the same transfer
    first = (await h.client.get("/v1/settlement/payments/pay_a1")).json()["splits"][0]["ledger_transfer_id"]
    async with h.runtime.uow.begin() as tx:
        await tx.conn.execute(
            update(split_executions).values(status="pending", next_attempt_at=split_executions.c.created_at)
        )
    assert await post_all(h) == 2 - 1
    assert (await h.client.get("/v1/settlement/payments/pay_a1")).json()["splits"][0]["ledger_transfer_id"] == first
    assert await h.balance("tch_1", "merchant_pending") == 2982

    # partial refund, then the rest: every receiver gives back proportionally, to the fen
    await h.deliver(refund_event("re_1", "pay_a1", 5000))
    await h.deliver(refund_event("re_1", "pay_a1", 5000))  # redelivered under another event id: one reversal
    assert await post_all(h) == 1
    assert await h.balance("tch_1", "merchant_pending") == 2982 - 1491
    await h.deliver(refund_event("re_2", "pay_a1", 5000))
    assert await post_all(h) == 1
    assert await h.balance("tch_1", "merchant_pending") == 0
    assert await h.balance("platform", "platform_fee_income") == 0
    assert await h.balance("mch_1", "merchant_pending") == 0
    splits = (await h.client.get("/v1/settlement/payments/pay_a1")).json()["splits"]
    assert [s["kind"] for s in splits] == ["split", "reversal", "reversal"]
    assert all(s["status"] == "posted" for s in splits)
    h.verify_ledger()


async def test_no_rule_no_split_and_failed_payment_not_split(settlement_only: Harness) -> None:
    h = settlement_only
    await h.deliver(payment_event("pay_b1", merchant_id="mch_free"))
    await h.deliver(payment_event("pay_b2", kind="payment.failed"))
    assert (await h.client.get("/v1/settlement/payments/pay_b1")).json()["splits"] == []
    record = (await h.client.get("/v1/settlement/payments/pay_b2")).json()
    assert record["status"] == "failed" and record["splits"] == []
    assert await post_all(h) == 0


async def test_explicit_split_realtime_and_refunds(harness: Harness) -> None:
    """The split check's explicit split (docs/contracts.md §1): the payment's own split (validated again at
    success), what it leaves stays with the payee; refunds reverse it proportionally; a split that no longer fits
    the rule falls back to the rule."""
    h = harness
    await configure(h)
    split = [{"receiver_id": "teacher", "amount_minor": 1000}, {"receiver_id": "platform", "amount_minor": 50}]
    await h.deliver(payment_event("pay_x1", extra={"split": split, "profit_sharing": False, "purpose": "payment"}))
    record = (await h.client.get("/v1/settlement/payments/pay_x1")).json()
    assert record["explicit_split"] == split and record["purpose"] == "payment"
    [spl] = record["splits"]
    assert spl["allocations"] == {"teacher": 1000, "platform": 50, "@payee": 9940 - 1050}
    assert await post_all(h) == 1
    assert await h.balance("tch_1", "merchant_pending") == 1000
    assert await h.balance("platform", "platform_fee_income") == 50
    assert await h.balance("mch_1", "merchant_pending") == -1050

    await h.deliver(refund_event("re_x1", "pay_x1", 2500))  # a quarter
    assert await post_all(h) == 1
    assert await h.balance("tch_1", "merchant_pending") == 750
    await h.deliver(refund_event("re_x2", "pay_x1", 7500))
    assert await post_all(h) == 1
    assert await h.balance("tch_1", "merchant_pending") == 0
    assert await h.balance("platform", "platform_fee_income") == 0
    assert await h.balance("mch_1", "merchant_pending") == 0

    # teacher above its 30 % rule share (the rule changed after the cashier's check): the rule applies
    too_much = [{"receiver_id": "teacher", "amount_minor": 5000}]
    await h.deliver(payment_event("pay_x2", extra={"split": too_much}))
    [spl] = (await h.client.get("/v1/settlement/payments/pay_x2")).json()["splits"]
    assert spl["allocations"] == {"teacher": 2982, "platform": 100, "mch_1": 6858}
    # a wallet top-up (docs/contracts.md §4) is the ledger's §3.7: recorded, never settled or split
    await h.deliver(payment_event("pay_x3", extra={"purpose": "wallet_topup", "wallet_holder_id": "usr_1"}))
    topup = (await h.client.get("/v1/settlement/payments/pay_x3")).json()
    assert topup["purpose"] == "wallet_topup" and topup["splits"] == []
    assert await post_all(h) == 1
    h.verify_ledger()
