"""The bonus sub-balance of a top-up promotion (充值送): marketing's `topup.bonus_granted` / `topup.bonus_revoked`
from the real broker are posted once each (Dr 5201 → Cr 2308, and back for what is left), the bonus is kept
apart from the cash balance, may be spent but never withdrawn or transferred, and the ledger stays balanced."""

from __future__ import annotations

from typing import Any

from libs.common.events import Envelope
from services.ledger.tests.integration.test_cashier_consumer import accounts_of, eventually, publish
from services.ledger.tests.integration.test_wallet_topup import TOPUP_MERCHANT, open_person, top_up_paid

HOLDER = "usr_bonus_1"


def bonus_event(kind: str, payment_id: str, bonus_minor: int, **extra: Any) -> Envelope:
    data = {
        "payment_id": payment_id,
        "holder_id": HOLDER,
        "promotion_id": "tpp_1",
        "bonus_minor": bonus_minor,
        "currency": "CNY",
        **extra,
    }
    return Envelope(type=f"topup.bonus_{kind}", source="marketing", subject=payment_id, data=data)


async def subaccounts(ledger: Any) -> dict[str, dict[str, Any]]:
    r = await ledger.client.get(f"/v1/wallet/holders/{HOLDER}/my-wallet")
    assert r.status_code == 200, r.text
    return {v["subaccount_type"]: v for v in r.json()["subaccounts"]}


async def posted(ledger: Any, kind: str) -> int | None:
    found = await subaccounts(ledger)
    return int(found[kind]["balances"]["posted_balance_minor"]) if kind in found else None


async def test_bonus_granted_once_kept_apart_spend_only_and_what_is_left_revoked(
    ledger_factory: Any, platform_topics: str, juhe_infra: Any
) -> None:
    ledger = await ledger_factory(wallet_topup_merchant_id=TOPUP_MERCHANT)
    await open_person(ledger, HOLDER)
    # The test book's marketing expense exists first (a test payment's coupon opened it): the wallet, live money,
    # must still post against the live book's, or the engine refuses the transfer (books_mixed).
    test_book = await ledger.client.post(
        "/v1/accounts",
        json={
            "holder_id": "platform",
            "currency": "CNY",
            "kind": "marketing_expense",
            "code": "5201",
            "livemode": False,
            "idempotency_key": "chart:marketing_expense:platform:CNY",
        },
    )
    assert test_book.status_code == 201 and test_book.json()["livemode"] is False, test_book.text
    paid = top_up_paid("pay_bn_1", TOPUP_MERCHANT, HOLDER)  # 10000 in the cash balance
    await publish(juhe_infra.bootstrap, platform_topics, "cashier.payments", paid)
    granted = bonus_event("granted", "pay_bn_1", 1_000, topup_minor=10_000, expires_at=None)
    again = Envelope(type=granted.type, source="marketing", subject=granted.subject, data=granted.data)  # new id
    await publish(juhe_infra.bootstrap, platform_topics, "marketing.topups", granted, granted, again)
    await eventually(lambda: _equals(posted(ledger, "bonus"), 1_000), "the bonus in its own sub-account")
    await eventually(lambda: _equals(posted(ledger, "balance"), 10_000), "the top-up in the cash balance")
    bonus = (await subaccounts(ledger))["bonus"]
    rights = {action: rule["allowed"] for action, rule in bonus["entitlements"].items()}
    assert rights == {"top_up": True, "spend": True, "withdraw": False, "transfer": False}
    expense = await live_expense(ledger)
    assert expense["code"] == "5201" and expense["balances"]["posted_balance_minor"] == 1_000  # the platform funds it
    # Spending order (§3.11): the cash balance first, then the bonus. 10300 takes the 10000 and 300 of the bonus,
    # in one transfer; 800 more is refused whole (700 left), nothing moved.
    pay = f"/v1/wallet/holders/{HOLDER}/payments"
    spent = await ledger.client.post(
        pay, json={"payment_id": "pay_bn_spend_1", "merchant_id": "mch_bn", "amount_minor": 10_300}
    )
    assert spent.status_code == 201, spent.text
    assert (await posted(ledger, "balance"), await posted(ledger, "bonus")) == (0, 700)
    refused = await ledger.client.post(
        pay, json={"payment_id": "pay_bn_spend_2", "merchant_id": "mch_bn", "amount_minor": 800}
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "insufficient_funds"), refused.text
    assert (await posted(ledger, "balance"), await posted(ledger, "bonus")) == (0, 700)
    merchant = (await accounts_of(ledger, "mch_bn"))["merchant_pending:"]
    assert merchant["balances"]["posted_balance_minor"] == 10_300
    # The top-up is refunded: marketing revokes the bonus; the ledger takes back what is left (700), once
    # however often the instruction comes.
    revoked = bonus_event("revoked", "pay_bn_1", 1_000, refund_id="re_bn_1")
    await publish(juhe_infra.bootstrap, platform_topics, "marketing.topups", revoked, revoked)
    await eventually(lambda: _equals(posted(ledger, "bonus"), 0), "what was left of the bonus taken back")
    for kind, amount in (("bonus_grant", 1_000), ("bonus_revocation", 700)):
        op = await ledger.client.get("/v1/wallet/operations", params={"kind": kind, "idempotency_key": "pay_bn_1"})
        assert (op.status_code, op.json()["amount_minor"]) == (200, amount), op.text
    expense = await live_expense(ledger)
    assert expense["balances"]["posted_balance_minor"] == 300  # the platform bore what was spent, no more
    # A revocation of a bonus that was never posted (unknown payment) changes nothing.
    await publish(juhe_infra.bootstrap, platform_topics, "marketing.topups", bonus_event("revoked", "pay_bn_x", 500))
    await publish(juhe_infra.bootstrap, platform_topics, "marketing.topups", bonus_event("granted", "pay_bn_2", 200))
    await eventually(lambda: _equals(posted(ledger, "bonus"), 200), "a later bonus, after the unknown revocation")
    expired = bonus_event("expired", "pay_bn_2", 200, expires_at="2026-12-01T00:00:00+00:00")
    await publish(juhe_infra.bootstrap, platform_topics, "marketing.topups", expired, expired)
    await eventually(lambda: _equals(posted(ledger, "bonus"), 0), "an expired bonus taken back")
    op = await ledger.client.get(
        "/v1/wallet/operations", params={"kind": "bonus_expiry", "idempotency_key": "pay_bn_2"}
    )
    assert (op.status_code, op.json()["amount_minor"]) == (200, 200), op.text

    # Lots (§3.11): each bonus is its own lot. A later grant that expires sooner is spent first, and a revocation
    # takes back what is left of ITS lot only, not "up to that bonus" from the pool (which took 300 here before).
    for pay_id, amount, expires in (
        ("pay_bn_3", 500, "2027-06-01T00:00:00+00:00"),
        ("pay_bn_4", 400, "2027-01-01T00:00:00+00:00"),
    ):
        granted = bonus_event("granted", pay_id, amount, topup_minor=10_000, expires_at=expires)
        await publish(juhe_infra.bootstrap, platform_topics, "marketing.topups", granted)
    await eventually(lambda: _equals(posted(ledger, "bonus"), 900), "two more bonuses, each in its lot")
    spent = await ledger.client.post(
        pay, json={"payment_id": "pay_bn_spend_3", "merchant_id": "mch_bn", "amount_minor": 600}
    )
    assert spent.status_code == 201, spent.text
    assert await lots(ledger) == {"pay_bn_3": 300, "pay_bn_4": 0}  # the earliest expiry (pay_bn_4) first
    revoked = bonus_event("revoked", "pay_bn_4", 400, refund_id="re_bn_4")
    await publish(juhe_infra.bootstrap, platform_topics, "marketing.topups", revoked, revoked)
    await eventually(lambda: _lot_closed(ledger, "pay_bn_4"), "the revoked bonus's lot ended and closed")
    assert await posted(ledger, "bonus") == 300  # pay_bn_3's rest stays the holder's
    expired = bonus_event("expired", "pay_bn_3", 500, expires_at="2027-06-01T00:00:00+00:00")
    await publish(juhe_infra.bootstrap, platform_topics, "marketing.topups", expired)
    await eventually(lambda: _equals(posted(ledger, "bonus"), 0), "the expired lot's rest taken back")
    expense = await live_expense(ledger)
    assert expense["balances"]["posted_balance_minor"] == 300 + 600  # what was spent, nothing more


async def live_expense(ledger: Any) -> dict[str, Any]:
    """The platform's live-book 5201 marketing expense (the wallet's bonuses are live money)."""
    r = await ledger.client.get("/v1/accounts", params={"holder_id": "platform", "livemode": "true"})
    assert r.status_code == 200, r.text
    [expense] = [a for a in r.json()["data"] if a["kind"] == "marketing_expense"]
    return dict(expense)


async def lots(ledger: Any) -> dict[str, int]:
    """The holder's open bonus lots (9106) by granting payment: what is left of each."""
    r = await ledger.client.get("/v1/accounts", params={"holder_id": HOLDER, "limit": 200})
    return {
        a["metadata"]["payment_id"]: a["balances"]["posted_balance_minor"]
        for a in r.json()["data"]
        if a["kind"] == "wallet_bonus_lot" and a["status"] != "closed"
    }


async def _lot_closed(ledger: Any, payment_id: str) -> bool:
    return payment_id not in await lots(ledger)


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)
