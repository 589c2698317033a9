"""Points: earned on `payment.succeeded`, capped per payment and per user per day, taken back in proportion
to refunds — the same final state whatever order the cashier's events arrive in, and twice is once.
Events are applied through the very handlers the inbox consumer calls, inside a unit of work."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

from libs.common.events import Envelope
from services.marketing.tests.integration.conftest import Marketing, code
from services.marketing.worker import expire_points_round

RULES = "/v1/marketing/points-rules"


def payment(
    payment_id: str,
    amount_minor: int,
    *,
    user: str | None = "usr_1",
    merchant_id: str = "mch_a",
    purpose: str = "payment",
    at: datetime | None = None,
) -> Envelope:
    return Envelope(
        type="payment.succeeded",
        source="cashier",
        subject=payment_id,
        data={
            "payment_id": payment_id,
            "merchant_id": merchant_id,
            "status": "succeeded",
            "amount_minor": amount_minor,
            "currency": "CNY",
            "purpose": purpose,
            "payer_user_id": user,
            "succeeded_at": (at or datetime.now(UTC)).isoformat(),
        },
    )


def refund(refund_id: str, payment_id: str, amount_minor: int) -> Envelope:
    return Envelope(
        type="refund.succeeded",
        source="cashier",
        subject=refund_id,
        data={
            "refund_id": refund_id,
            "payment_id": payment_id,
            "merchant_id": "mch_a",
            "status": "succeeded",
            "amount_minor": amount_minor,
            "currency": "CNY",
        },
    )


async def earnings(m: Marketing, user: str = "usr_1") -> dict[str, tuple[int, int]]:
    page = (await m.get("/v1/marketing/me/points/earnings", m.user(user))).json()
    return {e["payment_id"]: (e["points"], e["reversed_points"]) for e in page["data"]}


async def test_points_earned_capped_and_reversed_in_proportion(marketing: Marketing) -> None:
    created = await marketing.post(
        RULES,
        {
            "name": "1 per yuan",
            "unit_minor": 100,
            "points_per_unit": 1,
            "payment_points_max": 500,
            "user_daily_points_max": 700,
        },
        marketing.merchant("mch_a"),
    )
    assert created.status_code == 201 and created.json()["merchant_id"] == "mch_a"
    await marketing.deliver(payment("pay_1", 12_345))  # 123 points
    await marketing.deliver(payment("pay_1", 12_345))  # the same payment again: nothing more
    await marketing.deliver(payment("pay_2", 90_000))  # 900 → 500 per payment
    await marketing.deliver(payment("pay_3", 50_000))  # 500 → 77 left of the 700 daily cap
    await marketing.deliver(payment("pay_4", 50_000, user=None))  # no known payer: nothing
    await marketing.deliver(payment("pay_5", 50_000, purpose="wallet_topup"))  # a top-up is no purchase
    await marketing.deliver(payment("pay_6", 50_000, merchant_id="mch_b"))  # another merchant: no rule
    assert await earnings(marketing) == {"pay_1": (123, 0), "pay_2": (500, 0), "pay_3": (77, 0)}
    await marketing.deliver(refund("re_1", "pay_1", 4_000))  # 123 × 4000 / 12345 = 39
    await marketing.deliver(refund("re_1", "pay_1", 4_000))  # twice is once
    assert (await earnings(marketing))["pay_1"] == (123, 39)
    await marketing.deliver(refund("re_2", "pay_1", 8_345))
    assert (await earnings(marketing))["pay_1"] == (123, 123)
    earned = [e["data"]["points"] for e in await marketing.events("points.earned")]
    reversed_ = [e["data"]["points"] for e in await marketing.events("points.reversed")]
    assert (earned, reversed_) == ([123, 500, 77], [39, 84])
    assert all(e["subject"] == e["data"]["payment_id"] for e in await marketing.events("points.reversed"))


async def test_the_final_state_is_the_same_in_every_event_order(marketing: Marketing) -> None:
    await marketing.post(RULES, {"name": "2 per yuan", "points_per_unit": 2}, marketing.operator())
    events = [payment("pay_1", 10_000), refund("re_1", "pay_1", 3_333), refund("re_2", "pay_1", 3_333)]
    outcomes = set()
    for n, order in enumerate(itertools.permutations(events)):
        suffix = f"_{n}"
        for event in order:
            data = {**event.data, "payment_id": event.data["payment_id"] + suffix}
            if "refund_id" in data:
                data["refund_id"] += suffix
            await marketing.deliver(Envelope(type=event.type, source="cashier", subject=event.subject, data=data))
        outcomes.add((await earnings(marketing))["pay_1" + suffix])
    assert outcomes == {(200, 133)}  # floor(200 × 6666 / 10000): from the refunds' total, never per refund


async def test_points_rules_are_scoped(marketing: Marketing) -> None:
    mine = marketing.merchant("mch_a")
    other = await marketing.post(RULES, {"name": "x", "merchant_id": "mch_b"}, mine)
    assert (other.status_code, code(other)) == (403, "funding_not_allowed")
    rule = (await marketing.post(RULES, {"name": "x"}, mine)).json()
    assert code(await marketing.post(f"{RULES}/{rule['rule_id']}/end", {}, marketing.merchant("mch_b"))) == (
        "points_rule_not_found"
    )
    assert (await marketing.get(RULES, marketing.merchant("mch_b"))).json()["data"] == []
    assert (await marketing.post(f"{RULES}/{rule['rule_id']}/end", {}, mine)).json()["status"] == "ended"
    assert (await marketing.post(f"{RULES}/{rule['rule_id']}/end", {}, mine)).json()["status"] == "ended"
    await marketing.deliver(payment("pay_1", 10_000))
    assert await earnings(marketing) == {}
    bad = await marketing.post(RULES, {"name": "x", "unit_minor": 0}, mine)
    assert code(bad) == "validation_failed"


EXCHANGES = "/v1/marketing/me/points/exchanges"


async def lots(m: Marketing) -> dict[str, tuple[int, int, int]]:
    """{payment: (consumed, expired, remaining)} of the user's earnings."""
    page = (await m.get("/v1/marketing/me/points/earnings", m.user())).json()
    return {e["payment_id"]: (e["consumed_points"], e["expired_points"], e["remaining_points"]) for e in page["data"]}


async def test_points_exchanged_first_to_expire_first_and_the_rest_expires(marketing: Marketing) -> None:
    """Lots expire `expiry_days` after their payment; an exchange spends the lot that expires first, claims the
    coupon like any claim and publishes `points.exchanged`; too few points or a stock not offered for points is
    refused with nothing changed; a replay is the first exchange; past the expiry the sweep expires what is left
    (`points.expired`, once), and expired points buy nothing."""
    rule = await marketing.post(RULES, {"name": "1 per yuan, 30 days", "expiry_days": 30}, marketing.operator())
    assert rule.status_code == 201 and rule.json()["expiry_days"] == 30
    await marketing.deliver(payment("pay_new", 50_000))  # 500 points, expire in 30 days
    await marketing.deliver(payment("pay_old", 30_000, at=datetime.now(UTC) - timedelta(days=20)))  # 300, in 10
    offered = await marketing.running_stock(points_price=500)
    plain = await marketing.running_stock()
    user = marketing.user()

    refused = await marketing.post(EXCHANGES, {"stock_id": plain["stock_id"], "request_id": "x0"}, user)
    assert (refused.status_code, code(refused)) == (422, "points_not_exchangeable")
    exchanged = await marketing.post(EXCHANGES, {"stock_id": offered["stock_id"], "request_id": "x1"}, user)
    assert exchanged.status_code == 201, exchanged.text
    body = exchanged.json()
    assert (body["points"], body["coupon"]["status"], body["coupon"]["stock_id"]) == (
        500,
        "available",
        offered["stock_id"],
    )
    replay = await marketing.post(EXCHANGES, {"stock_id": offered["stock_id"], "request_id": "x1"}, user)
    assert replay.status_code == 200 and replay.json()["exchange_id"] == body["exchange_id"]
    other = await marketing.post(EXCHANGES, {"stock_id": plain["stock_id"], "request_id": "x1"}, user)
    assert code(other) == "idempotency_key_reused"
    assert await lots(marketing) == {"pay_old": (300, 0, 0), "pay_new": (200, 0, 300)}

    short = await marketing.post(EXCHANGES, {"stock_id": offered["stock_id"], "request_id": "x2"}, user)
    assert (short.status_code, code(short), short.json()["available"]) == (409, "points_insufficient", 300)
    assert await lots(marketing) == {"pay_old": (300, 0, 0), "pay_new": (200, 0, 300)}
    coupons = (await marketing.get("/v1/marketing/me/coupons", user)).json()["data"]
    assert [c["coupon_id"] for c in coupons] == [body["coupon"]["coupon_id"]]

    assert await expire_points_round(marketing.runtime) == 0  # nothing is due yet
    marketing.move_clock(timedelta(days=31))
    cheap = await marketing.running_stock(points_price=1)
    expired_first = await marketing.post(EXCHANGES, {"stock_id": cheap["stock_id"], "request_id": "x3"}, user)
    assert code(expired_first) == "points_insufficient"  # past its expiry a lot buys nothing, swept or not
    assert await expire_points_round(marketing.runtime) == 1
    assert await expire_points_round(marketing.runtime) == 0  # a lot expires once
    assert await lots(marketing) == {"pay_old": (300, 0, 0), "pay_new": (200, 300, 0)}

    [spent] = await marketing.events("points.exchanged")
    assert spent["subject"] == body["exchange_id"] and spent["data"]["points"] == 500
    assert spent["data"]["lots"] == [{"payment_id": "pay_old", "points": 300}, {"payment_id": "pay_new", "points": 200}]
    [expired] = await marketing.events("points.expired")
    assert (expired["subject"], expired["data"]["points"], expired["data"]["user_id"]) == ("pay_new", 300, "usr_1")


async def test_a_refund_takes_a_lots_points_once_before_or_after_its_expiry(marketing: Marketing) -> None:
    """Two lots past their expiry, each refunded in full: one before the sweep (the refund takes its points, the
    sweep finds nothing left), one after it (the expiry took them, the refund takes nothing more). Either way
    the user loses the lot's points once, not the expired points again out of its other lots."""
    await marketing.post(RULES, {"name": "1 per yuan, 30 days", "expiry_days": 30}, marketing.operator())
    long_ago = datetime.now(UTC) - timedelta(days=40)
    for payment_id in ("pay_before", "pay_after"):
        await marketing.deliver(payment(payment_id, 30_000, at=long_ago))  # 300 points, expired 10 days ago
    await marketing.deliver(refund("re_before", "pay_before", 30_000))
    assert await expire_points_round(marketing.runtime) == 1  # pay_after: pay_before has nothing left
    await marketing.deliver(refund("re_after", "pay_after", 30_000))
    taken: dict[str, int] = {}
    for event in [*await marketing.events("points.reversed"), *await marketing.events("points.expired")]:
        taken[event["subject"]] = taken.get(event["subject"], 0) + event["data"]["points"]
    assert taken == {"pay_before": 300, "pay_after": 300}
    assert await lots(marketing) == {"pay_before": (0, 0, 0), "pay_after": (0, 300, 0)}
    assert await earnings(marketing) == {"pay_before": (300, 300), "pay_after": (300, 300)}


async def test_a_refund_after_an_exchange_takes_only_what_the_exchange_left(marketing: Marketing) -> None:
    """300 points, 100 of them exchanged for a coupon, then the payment refunded in full: `points.reversed`
    carries the 200 left, not 300 — every instruction of the lot fits in what it granted, so the ledger's
    sub-account ends at marketing's lots whichever instruction it posts first."""
    await marketing.post(RULES, {"name": "1 per yuan"}, marketing.operator())
    await marketing.deliver(payment("pay_x", 30_000))
    offered = await marketing.running_stock(points_price=100)
    exchanged = await marketing.post(EXCHANGES, {"stock_id": offered["stock_id"], "request_id": "x1"}, marketing.user())
    assert exchanged.status_code == 201, exchanged.text
    await marketing.deliver(refund("re_x", "pay_x", 30_000))
    [reversal] = await marketing.events("points.reversed")
    assert (reversal["data"]["points"], reversal["data"]["reversed_points_total"]) == (200, 300)
    assert await lots(marketing) == {"pay_x": (100, 0, 0)}


async def test_twin_exchange_requests_in_flight_together_are_one_exchange(marketing: Marketing) -> None:
    """A client retrying while its first request is still in flight (two replicas): one exchange, the other
    answer its replay (200), never `points_insufficient` because the twin spent the points meanwhile."""
    await marketing.post(RULES, {"name": "1 per yuan"}, marketing.operator())
    offered = await marketing.running_stock(points_price=100)
    for i in range(6):
        user = f"usr_twin_{i}"
        await marketing.deliver(payment(f"pay_twin_{i}", 10_000, user=user))  # exactly the price
        body = {"stock_id": offered["stock_id"], "request_id": f"twin{i}"}
        answers = await asyncio.gather(
            *(marketing.post(EXCHANGES, body, marketing.user(user), replica) for replica in (0, 1))
        )
        assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
        assert answers[0].json()["exchange_id"] == answers[1].json()["exchange_id"]
