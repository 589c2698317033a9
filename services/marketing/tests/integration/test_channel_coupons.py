"""Channel stocks without a channel: what marketing decides alone (the definitions a channel can mirror, the
channel user a claim needs, an outage changing nothing, callbacks stored once). The channel round trips — a stock
created at the WeChat Pay / Alipay sandbox, coupons sent and used, callbacks, the comparison, `channel_refused` —
run on real processes in tests/e2e/test_channel_coupons.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, update

from services.marketing.context import marketing_context
from services.marketing.flows import channel_coupons
from services.marketing.store.tables import channel_coupons as channel_coupons_table
from services.marketing.store.tables import channel_stocks, coupon_stocks
from services.marketing.tests.integration.conftest import Marketing, code

SOON = (datetime.now(UTC) + timedelta(days=7)).isoformat()


def _stock(campaign_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "name": "满10减5",
        "discount_kind": "fixed",
        "amount_off_minor": 500,
        "threshold_minor": 1000,
        "valid_until": SOON,
        "funding_party": "merchant",
        "budget_count": 5,
        "channel": "wechatpay_favor",
        **overrides,
    }


async def test_channel_stocks_are_checked_and_an_outage_changes_nothing(marketing: Marketing) -> None:
    merchant = marketing.merchant()
    campaign = await marketing.campaign(merchant)
    invalid: list[tuple[dict[str, Any], str]] = [
        ({"discount_kind": "percent", "amount_off_minor": None, "percent_off_bps": 1000}, "discount_kind"),
        ({"threshold_minor": 500}, "threshold_minor"),
        ({"valid_until": None, "valid_days_after_claim": 30}, "valid_until"),
        ({"valid_until": (datetime.now(UTC) + timedelta(days=120)).isoformat()}, "valid_until"),
        ({"budget_minor": 1000}, "budget_minor"),
        ({"points_price": 100}, "points_price"),
    ]
    for overrides, field in invalid:
        refused = await marketing.post("/v1/marketing/stocks", _stock(campaign, **overrides), merchant)
        assert (refused.status_code, code(refused), refused.json().get("field")) == (422, "invalid_stock", field)

    created = await marketing.post("/v1/marketing/stocks", _stock(campaign), merchant)
    assert created.status_code == 201 and created.json()["channel"] == "wechatpay_favor", created.text
    stock_id = created.json()["stock_id"]
    no_user = await marketing.claim(stock_id)
    assert (no_user.status_code, code(no_user)) == (422, "channel_user_required")
    down = await marketing.post(f"/v1/marketing/stocks/{stock_id}/start", {}, merchant)  # no cashier configured
    assert (down.status_code, code(down)) == (503, "channel_unavailable")
    assert down.json()["retryable"] is True
    still = await marketing.get(f"/v1/marketing/stocks/{stock_id}", merchant)
    assert still.json()["status"] == "draft"
    budget = await marketing.post(
        f"/v1/marketing/stocks/{stock_id}/budget", {"budget_count": 10, "budget_minor": 5000}, merchant
    )
    assert (budget.status_code, code(budget), budget.json()["field"]) == (422, "invalid_stock", "budget_count")

    platform_campaign = await marketing.campaign()  # the platform's own: its channel account is not configured
    merchant_funded = await marketing.post("/v1/marketing/stocks", _stock(platform_campaign), marketing.operator())
    assert (code(merchant_funded), merchant_funded.json()["field"]) == ("invalid_stock", "funding_party")
    platform_stock = await marketing.post(
        "/v1/marketing/stocks", _stock(platform_campaign, funding_party="platform"), marketing.operator()
    )
    assert platform_stock.status_code == 201, platform_stock.text
    unconfigured = await marketing.post(
        f"/v1/marketing/stocks/{platform_stock.json()['stock_id']}/start", {}, marketing.operator()
    )
    assert (unconfigured.status_code, code(unconfigured), unconfigured.json()["field"]) == (
        422,
        "invalid_stock",
        "channel",
    )
    today = datetime.now(UTC).date().isoformat()  # no stock made at a channel yet: nothing to compare
    nothing = await marketing.get(f"/v1/marketing/channel-comparisons?date={today}", marketing.operator())
    assert nothing.status_code == 200 and nothing.json()["stocks"] == [] and nothing.json()["complete"] is True


async def _running_channel_stock(marketing: Marketing) -> str:
    """A channel stock as its start leaves it (the channel part of a start needs the cashier: tests/e2e)."""
    merchant = marketing.merchant()
    created = await marketing.post("/v1/marketing/stocks", _stock(await marketing.campaign(merchant)), merchant)
    stock_id = str(created.json()["stock_id"])
    async with marketing.runtime.uow.begin() as tx:
        await tx.conn.execute(
            insert(channel_stocks).values(
                stock_id=stock_id,
                program="wechatpay_favor",
                merchant_id="mch_a",
                out_request_no=stock_id,
                request={},
                channel_stock_id=f"9{stock_id[-9:]}",
                channel_status="running",
            )
        )
        await tx.conn.execute(
            update(coupon_stocks).where(coupon_stocks.c.stock_id == stock_id).values(status="running")
        )
    return stock_id


async def test_callbacks_apply_in_any_order_and_an_outage_leaves_the_send_pending(marketing: Marketing) -> None:
    stock_id = await _running_channel_stock(marketing)
    coupons: list[str] = []
    for n in range(3):
        body = {"stock_id": stock_id, "request_id": "r1", "channel_user": f"oUser{n}"}
        claimed = await marketing.post("/v1/marketing/me/claims", body, marketing.user(f"usr_{n}"))
        assert claimed.status_code == 201, claimed.text
        assert claimed.json()["channel"]["send_status"] == "pending"  # no cashier: the worker sends it later
        coupons.append(claimed.json()["coupon_id"])
    cashier = marketing_context(marketing.runtime).cashier
    past = datetime.now(UTC) + timedelta(seconds=1)
    assert await channel_coupons.send_round(marketing.runtime.uow, cashier, batch_max=10, older_than=past) == 3
    still = await marketing.get(f"/v1/marketing/me/coupons/{coupons[0]}", marketing.user("usr_0"))
    assert still.json()["channel"]["send_status"] == "pending"  # an outage changes nothing: sent again later

    orders = {coupons[0]: ["used"], coupons[1]: ["expired", "used"], coupons[2]: ["used", "expired"]}
    for coupon_id, kinds in orders.items():  # every callback before our record of the send: stored, waiting
        for kind in kinds:
            event = {
                "program": "wechatpay_favor",
                "merchant_id": "mch_a",
                "event_id": f"{coupon_id}-{kind}",
                "kind": kind,
                "channel_stock_id": "1",
                "channel_coupon_id": f"wx-{coupon_id}",
            }
            stored = await marketing.post(
                "/v1/internal/marketing/channel-coupon-events", event, marketing.headers(service="cashier")
            )
            assert stored.json()["recorded"] is True
    replay = {
        "program": "wechatpay_favor",
        "merchant_id": "mch_a",
        "event_id": f"{coupons[0]}-used",
        "kind": "used",
        "channel_stock_id": "1",
        "channel_coupon_id": f"wx-{coupons[0]}",
    }
    again = await marketing.post(
        "/v1/internal/marketing/channel-coupon-events", replay, marketing.headers(service="cashier")
    )
    assert again.status_code == 200 and again.json()["recorded"] is False  # the channel's replay: nothing new
    outsider = await marketing.post("/v1/internal/marketing/channel-coupon-events", replay, marketing.merchant())
    assert outsider.status_code == 403  # only another Juhe service hands callbacks over
    for n, coupon_id in enumerate(coupons):
        mine = await marketing.get(f"/v1/marketing/me/coupons/{coupon_id}", marketing.user(f"usr_{n}"))
        assert mine.json()["status"] == "available"
        async with marketing.runtime.uow.begin() as tx:  # the send's answer lands (as flows.channel_coupons.send)
            sent = update(channel_coupons_table).where(channel_coupons_table.c.coupon_id == coupon_id)
            await tx.conn.execute(sent.values(send_status="sent", channel_coupon_id=f"wx-{coupon_id}"))
            await channel_coupons.apply_events(tx, "wechatpay_favor", f"wx-{coupon_id}")
        mine = await marketing.get(f"/v1/marketing/me/coupons/{coupon_id}", marketing.user(f"usr_{n}"))
        assert mine.json()["status"] == "used", (orders[coupon_id], mine.json())  # the channel's use wins

    other = await marketing.post(
        "/v1/marketing/me/claims",
        {"stock_id": stock_id, "request_id": "r1", "channel_user": "oUser3"},
        marketing.user("usr_3"),
    )
    locked = await marketing.post(
        "/v1/internal/marketing/locks",
        {
            "payment_id": "pay_x",
            "coupon_id": other.json()["coupon_id"],
            "user_id": "usr_3",
            "merchant_id": "mch_a",
            "scene": "h5",
            "order_amount_minor": 5000,
        },
        marketing.headers(service="cashier"),
    )
    assert (locked.status_code, code(locked), locked.json()["field"]) == (422, "coupon_not_applicable", "channel")
