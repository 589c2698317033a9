"""Marketing through the real gateway over HTTP: operators and merchants manage stocks with their own
credentials, users claim with their token, staff redeem in store; the gateway scopes each of them and
never routes the cashier's internal redemption API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app as create_gateway
from gateway.flows.seed import DEMO_MERCHANT_ID, DEMO_USER_ID, seed_demo_async
from gateway.tests.conftest import SDK_PATH
from gateway.tests.integration.servers import ThreadServer
from services.marketing.app import create_app

assert SDK_PATH  # importing it put the SDK's source folder on sys.path (it is not installed here)
from juhe_sdk import APIError, AsyncClient  # noqa: E402


@pytest.fixture
async def stack(
    migrated_database: Callable[..., Any], service_settings: Callable[..., Any], tmp_path: Path
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    marketing = ThreadServer(
        create_app(service_settings("marketing", database_url=await migrated_database("marketing"), role="api"))
    ).start()
    gateway_db = await migrated_database("gateway")
    settings = service_settings(
        "gateway",
        database_url=gateway_db,
        role="api",
        marketing_url=marketing.base_url,
        key_cache_ttl_seconds=0,
        upstream_connect_retries_max=0,
    )
    keys = await seed_demo_async(gateway_db, tmp_path / "keys.json", settings=settings)
    gateway = ThreadServer(create_gateway(settings)).start()
    try:
        yield gateway.base_url, keys
    finally:
        gateway.stop()
        marketing.stop()


async def _refused(call: Any) -> str:
    with pytest.raises(APIError) as info:
        await call
    return str(info.value.code)


async def test_a_coupon_issued_claimed_and_redeemed_through_the_gateway(stack: tuple[str, dict[str, Any]]) -> None:
    url, keys = stack
    async with (
        AsyncClient(url, token=keys["admin_key"], max_retries=0) as operator,
        AsyncClient(url, key_id=keys["key_id"], secret=keys["secret"], max_retries=0) as merchant,
        AsyncClient(url, token=keys["user_token"], max_retries=0) as user,
    ):
        # The merchant runs its own self-funded stock; the operator sees it, the user claims it.
        campaign = await merchant.request(
            "POST", "/v1/marketing/campaigns", json={"name": "Opening"}, idempotency_key="cmp-1"
        )
        assert campaign["owner_merchant_id"] == DEMO_MERCHANT_ID
        stock = await merchant.request(
            "POST",
            "/v1/marketing/stocks",
            idempotency_key="cps-1",
            json={
                "campaign_id": campaign["campaign_id"],
                "name": "5 off",
                "discount_kind": "fixed",
                "amount_off_minor": 500,
                "valid_days_after_claim": 7,
                "funding_party": "merchant",
                "budget_count": 10,
            },
        )
        await merchant.request("POST", f"/v1/marketing/stocks/{stock['stock_id']}/start", idempotency_key="start-1")
        assert (await operator.request("GET", f"/v1/marketing/stocks/{stock['stock_id']}"))["status"] == "running"
        coupon = await user.request(
            "POST",
            "/v1/marketing/me/claims",
            idempotency_key="claim-1",
            json={"stock_id": stock["stock_id"], "request_id": "claim-1"},
        )
        assert coupon["user_id"] == DEMO_USER_ID
        mine = await user.request("GET", "/v1/marketing/me/coupons")
        assert [c["coupon_id"] for c in mine["data"]] == [coupon["coupon_id"]]
        # Users reach only /v1/marketing/me; the cashier's redemption API is never routed from outside.
        assert await _refused(user.request("GET", "/v1/marketing/stocks")) == "route_forbidden"
        lock = {
            "payment_id": "pay_x",
            "coupon_id": coupon["coupon_id"],
            "user_id": DEMO_USER_ID,
            "merchant_id": DEMO_MERCHANT_ID,
            "order_amount_minor": 1000,
        }
        assert (
            await _refused(
                operator.request("POST", "/v1/internal/marketing/locks", json=lock, idempotency_key="lock-1")
            )
            == "route_not_found"
        )
        # The merchant's staff redeems the code at the till.
        redeemed = await merchant.request(
            "POST",
            "/v1/marketing/in-store/redemptions",
            idempotency_key="till-1",
            json={"request_id": "till-1", "qr_payload": coupon["qr_payload"], "order_amount_minor": 3000},
        )
        assert (redeemed["status"], redeemed["discount_minor"], redeemed["payable_minor"]) == ("used", 500, 2500)
        stats = await merchant.request("GET", f"/v1/marketing/campaigns/{campaign['campaign_id']}/stats")
        assert (stats["claimed_count"], stats["redeemed_count"], stats["cost"]["merchant_minor"]) == (1, 1, 500)
        # The merchant cannot spend the platform's money.
        refused = merchant.request(
            "POST",
            "/v1/marketing/stocks",
            idempotency_key="cps-2",
            json={
                "campaign_id": campaign["campaign_id"],
                "name": "free money",
                "discount_kind": "fixed",
                "amount_off_minor": 500,
                "valid_days_after_claim": 7,
                "funding_party": "platform",
                "budget_count": 10,
            },
        )
        assert await _refused(refused) == "funding_not_allowed"
