from __future__ import annotations

from typing import Any

from services.routing.tests.integration.conftest import ACTOR, seed, payment


def order(body: dict[str, Any]) -> list[str]:
    return [c["route_id"] for c in body["candidates"]]


async def test_cheapest_route_wins_over_http_with_fee_and_explanation(make_app: Any) -> None:
    client = await make_app()
    await seed(client)
    r = await client.post("/v1/route", json=payment())
    assert r.status_code == 200, r.text
    body = r.json()
    assert order(body) == ["wx_sp", "wx_lianlian", "wx_direct"]
    first = body["candidates"][0]
    assert first["fee"]["fee_minor"] == 38 and first["fee"]["rate_bps"] == 38 and first["fee"]["currency"] == "CNY"
    assert first["sub_merchant_id"] == "sub_wx_sp" and first["connector"] == "wechatpay"
    assert "ranked by expected cost" in first["explanation"]
    assert {s["route_id"]: s["reason"] for s in body["skipped"]} == {"ali_direct": "method_mismatch"}
