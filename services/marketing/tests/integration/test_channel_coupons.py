"""Channel stocks without a channel: what marketing decides alone (the definitions a channel can mirror, the
channel user a claim needs, an outage changing nothing, callbacks stored once). The channel round trips — a stock
created at the WeChat Pay / Alipay sandbox, coupons sent and used, callbacks, the comparison, `channel_refused` —
run on real processes in tests/e2e/test_channel_coupons.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.marketing.tests.integration.conftest import Marketing, code

SOON = (datetime.now(UTC) + timedelta(days=7)).isoformat()


def _stock(campaign_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id, "name": "满10减5", "discount_kind": "fixed", "amount_off_minor": 500,
        "threshold_minor": 1000, "valid_until": SOON, "funding_party": "merchant", "budget_count": 5,
        "channel": "wechatpay_favor", **overrides,
    }  # fmt: skip


async def test_channel_stocks_are_checked_and_an_outage_changes_nothing(marketing: Marketing) -> None:
    merchant = marketing.merchant()
    campaign = await marketing.campaign(merchant)
    for overrides, field in [
        ({"discount_kind": "percent", "amount_off_minor": None, "percent_off_bps": 1000}, "discount_kind"),
        ({"threshold_minor": 500}, "threshold_minor"),
        ({"valid_until": None, "valid_days_after_claim": 30}, "valid_until"),
        ({"valid_until": (datetime.now(UTC) + timedelta(days=120)).isoformat()}, "valid_until"),
        ({"budget_minor": 1000}, "budget_minor"),
        ({"points_price": 100}, "points_price"),
    ]:
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

    platform_campaign = await marketing.campaign()  # the platform's own: its channel account is not configured
    platform_stock = await marketing.post("/v1/marketing/stocks", _stock(platform_campaign), marketing.operator())
    assert platform_stock.status_code == 201, platform_stock.text
    unconfigured = await marketing.post(
        f"/v1/marketing/stocks/{platform_stock.json()['stock_id']}/start", {}, marketing.operator()
    )
    assert (unconfigured.status_code, code(unconfigured), unconfigured.json()["field"]) == (
        422,
        "invalid_stock",
        "channel",
    )


async def test_a_channel_callback_is_stored_once_and_waits_for_its_coupon(marketing: Marketing) -> None:
    event = {
        "program": "wechatpay_favor", "merchant_id": "mch_a", "event_id": "evt-1", "kind": "used",
        "channel_stock_id": "1234567890", "channel_coupon_id": "98765432100", "transaction_id": "4200001",
        "occurred_at": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    cashier = marketing.headers(service="cashier")
    first = await marketing.post("/v1/internal/marketing/channel-coupon-events", event, cashier)
    assert first.status_code == 200 and first.json()["recorded"] is True, first.text
    again = await marketing.post("/v1/internal/marketing/channel-coupon-events", event, cashier)
    assert again.status_code == 200 and again.json()["recorded"] is False  # the channel's replay: nothing new
    outsider = await marketing.post("/v1/internal/marketing/channel-coupon-events", event, marketing.merchant())
    assert outsider.status_code == 403
    today = datetime.now(UTC).date().isoformat()
    nothing = await marketing.get(f"/v1/marketing/channel-comparisons?date={today}", marketing.operator())
    assert nothing.status_code == 200 and nothing.json()["stocks"] == [] and nothing.json()["complete"] is True
