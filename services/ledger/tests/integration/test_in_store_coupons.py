"""§3.14 end to end: marketing's `coupon.used` / `coupon.redemption_undone` of kind `in_store` from the real broker
move the platform's subsidy (Dr 5201 → Cr 2201 and back) once per redemption and direction, however often they
come; an online redemption's `coupon.used` posts nothing here (its funding is in the payment's transfer)."""

from __future__ import annotations

from typing import Any

from libs.common.events import Envelope
from services.ledger.tests.integration.test_cashier_consumer import accounts_of, eventually, publish

MERCHANT = "mch_instore_1"


def coupon_event(
    kind: str, redemption_id: str, coupon_id: str, redemption_kind: str = "in_store", **extra: Any
) -> Envelope:
    data = {
        "coupon_id": coupon_id,
        "redemption_id": redemption_id,
        "kind": redemption_kind,
        "payment_id": None,
        "campaign_id": "cmp_1",
        "merchant_id": MERCHANT,
        "store_id": "st_1",
        "currency": "CNY",
        **extra,
    }
    return Envelope(type=kind, source="marketing", subject=coupon_id, data=data)


async def balances(ledger: Any) -> tuple[int | None, int | None]:
    """(the merchant's 2201, the platform's 5201) posted balances; None before the account is opened."""
    merchant = (await accounts_of(ledger, MERCHANT)).get("merchant_pending:")
    expense = (await accounts_of(ledger, "platform")).get("marketing_expense:")
    return (
        merchant["balances"]["posted_balance_minor"] if merchant else None,
        expense["balances"]["posted_balance_minor"] if expense else None,
    )


async def test_in_store_subsidy_posted_once_and_taken_back_on_undo(
    ledger_factory: Any, platform_topics: str, juhe_infra: Any
) -> None:
    ledger = await ledger_factory()
    used = coupon_event("coupon.used", "rdm_s1", "cpn_s1", funding={"platform_minor": 300, "merchant_minor": 200})
    again = Envelope(type=used.type, source="marketing", subject=used.subject, data=used.data)  # new id, same event
    online = coupon_event(
        "coupon.used",
        "rdm_s2",
        "cpn_s2",
        redemption_kind="online",
        funding={"platform_minor": 500, "merchant_minor": 0},
    )
    await publish(juhe_infra.bootstrap, platform_topics, "marketing.coupons", used, used, again, online)

    async def subsidy_posted() -> bool:
        return await balances(ledger) == (300, 300) and await ledger.count("inbox") == 3  # used, again, online

    await eventually(subsidy_posted, "the platform's part credited to the merchant once")
    found = await ledger.client.get(
        "/v1/transfers", params={"source": "marketing", "idempotency_key": "rdm_s1:in_store_used"}
    )
    assert found.status_code == 200 and found.json()["reference"] == "rdm_s1", found.text
    assert await ledger.count("transfers") == 1  # the online redemption posted nothing

    undone = coupon_event(
        "coupon.redemption_undone",
        "rdm_s1",
        "cpn_s1",
        reversed={"platform_minor": 300, "merchant_minor": 200, "total_minor": 500},
    )
    await publish(juhe_infra.bootstrap, platform_topics, "marketing.coupons", undone, undone)

    async def taken_back() -> bool:
        return await balances(ledger) == (0, 0)

    await eventually(taken_back, "the undo taking the subsidy back")
    assert await ledger.count("transfers") == 2
