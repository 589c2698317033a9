"""The special-rate API through the gateway: routed to routing, platform operators only, audited as them."""

from __future__ import annotations

from typing import Any

import pytest
from juhe_sdk import PermissionDeniedError

from gateway.tests.integration.conftest import INTERNAL_SECRET, StackFactory
from gateway.tests.integration.servers import ThreadServer
from services.routing.app import create_app as routing_app


async def test_platform_operators_reach_the_special_rate_api_merchants_do_not(
    make_stack: StackFactory, migrated_database: Any, service_settings: Any
) -> None:
    routing = ThreadServer(
        routing_app(
            service_settings(
                "routing",
                database_url=await migrated_database("routing"),
                role="api",
                internal_token_secret=INTERNAL_SECRET,
            )
        )
    ).start()
    try:
        stack = await make_stack(routing_url=routing.base_url)
        admin, merchant = stack.admin(), stack.merchant()
        catalogue = await admin.request("GET", "/v1/special-rate-programmes")
        assert catalogue["example"] is True and catalogue["data"]
        profile = await admin.request(
            "PUT",
            "/v1/merchant-profiles/mch_demo",
            json={"entity_type": "individual_business", "industry_code": "5499"},
        )
        assert profile["version"] == 1
        eligible = await admin.request("GET", "/v1/merchant-profiles/mch_demo/special-rate-eligibility")
        assert {e["programme_id"] for e in eligible["data"] if e["eligible"]} == {
            "ali_micro_merchant",
            "wx_micro_merchant",
        }
        audit = await admin.request(
            "GET", "/v1/audit", params={"resource_type": "merchant_profile", "resource_id": "mch_demo"}
        )
        assert audit["data"][0]["actor"].startswith("platform:")
        for path in ("/v1/special-rate-programmes", "/v1/special-rate-savings"):
            with pytest.raises(PermissionDeniedError):
                await merchant.request("GET", path)
    finally:
        routing.stop()
