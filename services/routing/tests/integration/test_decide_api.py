from __future__ import annotations

from typing import Any

import httpx

from services.routing.tests.integration.conftest import ACTOR, payment, seed


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


async def test_force_and_deny_rules_apply_over_http(make_app: Any) -> None:
    client = await make_app()
    await seed(client)
    force = {
        "name": "big tickets go direct",
        "scope": "merchant",
        "merchant_id": "mch_school",
        "priority": 1,
        "conditions": {"amount_min_minor": 100_000},
        "action": {"kind": "force", "route_ids": ["wx_direct"]},
    }
    deny = {
        "name": "no lianlian in the WeChat browser",
        "scope": "platform",
        "priority": 2,
        "conditions": {"payer_clients": ["wechat"]},
        "action": {"kind": "deny", "route_ids": ["wx_lianlian"]},
    }
    for rule in (force, deny):
        assert (await client.post("/v1/rules", json=rule, headers=ACTOR)).status_code == 201
    big = (await client.post("/v1/route", json=payment(amount_minor=100_000))).json()
    assert order(big) == ["wx_direct", "wx_sp"] and big["candidates"][0]["placement"] == "forced"
    small_other_client = (await client.post("/v1/route", json=payment(payer_client="other"))).json()
    assert order(small_other_client) == ["wx_sp", "wx_lianlian", "wx_direct"]


async def test_the_real_service_process_answers_decide(
    service_processes: Any, routing_db: str, juhe_infra: Any, make_app: Any
) -> None:
    client = await make_app()
    await seed(client)
    proc = service_processes(
        "routing", {"database_url": routing_db, "kafka_bootstrap_servers": juhe_infra.bootstrap, "role": "api"}
    )
    async with httpx.AsyncClient(base_url=proc.base_url) as real:
        r = await real.post("/v1/route", json=payment(exclude_route_ids=["wx_sp"]))
    assert r.status_code == 200
    assert order(r.json()) == ["wx_lianlian", "wx_direct"]


async def test_methods_in_one_call_answer_as_each_method_alone(make_app: Any) -> None:
    """`/v1/route/methods` (the cashier's one call per payment) gives each method the decision `/v1/route`
    gives it alone, in the order asked; a method without a route says so in its outcome instead of failing
    the whole answer."""
    client = await make_app()
    await seed(client)
    body = {k: v for k, v in payment(exclude_route_ids=["wx_sp"]).items() if k != "method"}
    r = await client.post("/v1/route/methods", json={**body, "methods": ["alipay", "wechat", "unionpay"]})
    assert r.status_code == 200, r.text
    decisions = r.json()["decisions"]
    assert [d["method"] for d in decisions] == ["alipay", "wechat", "unionpay"]
    for decision in decisions[:2]:
        alone = (await client.post("/v1/route", json={**body, "method": decision["method"]})).json()
        assert decision["outcome"] == "routed" and order(decision) == order(alone)
        assert [c["fee"] for c in decision["candidates"]] == [c["fee"] for c in alone["candidates"]]
    assert order(decisions[1]) == ["wx_lianlian", "wx_direct"]
    alone = await client.post("/v1/route", json={**body, "method": "unionpay"})
    assert alone.status_code in (422, 503) and decisions[2]["outcome"] == alone.json()["code"]
    assert decisions[2]["candidates"] == []

    for bad in ([], ["wechat", "wechat"], ["cash"]):
        r = await client.post("/v1/route/methods", json={**body, "methods": bad})
        assert r.status_code == 422 and r.json()["code"] == "validation_failed", r.text
