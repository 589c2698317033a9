"""Marketing's points instructions (`marketing.points`) from the real broker posted to the user's points
sub-account: earned, reversed, exchanged for a coupon and expired, each once however often it comes; a debit the
sub-account cannot cover (a reversal of points already cashed here) is skipped without holding up the next ones."""

from __future__ import annotations

from typing import Any

from libs.common.events import Envelope
from services.ledger.tests.integration.test_cashier_consumer import eventually, publish
from services.ledger.tests.integration.test_wallet_topup import open_person

USER = "usr_points_1"


def points_event(kind: str, subject: str, points: int, **data: Any) -> Envelope:
    body = {"user_id": USER, "merchant_id": "mch_a", "rule_id": "ptr_1", "points": points, **data}
    return Envelope(type=f"points.{kind}", source="marketing", subject=subject, data=body)


async def points_balance(ledger: Any) -> int | None:
    r = await ledger.client.get(f"/v1/wallet/holders/{USER}/my-wallet")
    assert r.status_code == 200, r.text
    found = {v["subaccount_type"]: v for v in r.json()["subaccounts"]}
    return int(found["points"]["balances"]["posted_balance_minor"]) if "points" in found else None


async def operation_amount(ledger: Any, kind: str, key: str) -> int | None:
    r = await ledger.client.get("/v1/wallet/operations", params={"kind": kind, "idempotency_key": key})
    return int(r.json()["amount_minor"]) if r.status_code == 200 else None


async def test_points_instructions_posted_once_each_and_a_shortfall_skipped(
    ledger_factory: Any, platform_topics: str, juhe_infra: Any
) -> None:
    ledger = await ledger_factory()
    await open_person(ledger, USER)

    async def balance_is(expected: int) -> bool:
        return await points_balance(ledger) == expected

    earned = points_event("earned", "pay_p1", 300, payment_id="pay_p1")
    again = Envelope(type=earned.type, source="marketing", subject=earned.subject, data=earned.data)  # new id
    other = points_event("earned", "pay_p2", 200, payment_id="pay_p2")
    await publish(juhe_infra.bootstrap, platform_topics, "marketing.points", earned, earned, again, other)
    await eventually(lambda: balance_is(500), "two lots granted once each")

    reversed_ = points_event("reversed", "pay_p1", 100, payment_id="pay_p1", reversed_points_total=100)
    exchanged = points_event(
        "exchanged",
        "pxc_1",
        150,
        exchange_id="pxc_1",
        stock_id="stk_1",
        coupon_id="cpn_1",
        lots=[{"payment_id": "pay_p1", "points": 150}],
    )
    expired = points_event("expired", "pay_p2", 200, payment_id="pay_p2", expires_at="2026-12-01T00:00:00+00:00")
    for event in (reversed_, exchanged, expired):
        twin = Envelope(type=event.type, source="marketing", subject=event.subject, data=event.data)  # new id
        await publish(juhe_infra.bootstrap, platform_topics, "marketing.points", event, twin)
    await eventually(lambda: balance_is(50), "a reversal, an exchange and an expiry taken out once each")
    assert [
        await operation_amount(ledger, kind, key)
        for kind, key in (
            ("points_grant", "pay_p1:earned"),
            ("points_reversal", "pay_p1:reversed:100"),
            ("points_redemption", "pxc_1"),
            ("points_expiry", "pay_p2:expired"),
        )
    ] == [300, 100, 150, 200]

    # A reversal of 200 with 50 left (points cashed at the ledger's own /points/exchanges, which marketing's lots
    # do not know) is not posted (the sub-account never goes negative); the next instruction is posted all the same.
    shortfall = points_event("reversed", "pay_p1", 200, payment_id="pay_p1", reversed_points_total=300)
    later = points_event("earned", "pay_p3", 70, payment_id="pay_p3")
    await publish(juhe_infra.bootstrap, platform_topics, "marketing.points", shortfall, later)

    async def both_seen() -> bool:  # 3 grants, 3 instructions twice (new ids), the shortfall, the later grant
        return await ledger.count("inbox") == 11 and await balance_is(120)

    await eventually(both_seen, "the later grant posted, the reversal beyond the balance skipped")
    assert await operation_amount(ledger, "points_reversal", "pay_p1:reversed:300") is None
