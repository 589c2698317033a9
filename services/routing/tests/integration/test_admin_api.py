"""Admin API over HTTP with real PostgreSQL: validation, versions, audit, problem+json errors."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.routing.tests.integration.conftest import ACTOR, MERCHANT, ROUTES, payment, seed

PROBLEM = "application/problem+json"


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["code"] == code and body["status"] == status and body["type"].endswith(code)
    return body


async def test_bad_rules_are_rejected_with_every_field_error(make_app: Any) -> None:
    client = await make_app()
    await seed(client)
    bad = {
        "name": "split to nowhere",
        "scope": "merchant",
        "priority": 10,
        "conditions": {
            "amount_min_minor": 500,
            "amount_max_minor": 100,
            "time_of_day": {"start": "09:00", "end": "09:00"},
        },
        "action": {"kind": "split", "weights": {"wx_sp": 70, "nope": 30}},
    }
    body = assert_problem(await client.post("/v1/rules", json=bad, headers=ACTOR), 422, "rule_invalid")
    assert {e["field"] for e in body["errors"]} == {
        "merchant_id",
        "conditions.amount_max_minor",
        "conditions.time_of_day",
        "action",
    }
    force_two = {
        "name": "f",
        "scope": "platform",
        "priority": 1,
        "action": {"kind": "force", "route_ids": ["wx_sp", "wx_direct"]},
    }
    assert_problem(await client.post("/v1/rules", json=force_two, headers=ACTOR), 422, "rule_invalid")
    unknown_field = {
        "name": "x",
        "scope": "platform",
        "priority": 1,
        "action": {"kind": "deny", "route_ids": ["wx_sp"]},
        "oops": 1,
    }
    assert_problem(await client.post("/v1/rules", json=unknown_field, headers=ACTOR), 422, "validation_failed")
    bad_kind = {"name": "x", "scope": "platform", "priority": 1, "action": {"kind": "maybe", "route_ids": ["wx_sp"]}}
    assert_problem(await client.post("/v1/rules", json=bad_kind, headers=ACTOR), 422, "validation_failed")
    listed = (await client.get("/v1/rules")).json()
    assert listed["data"] == []


async def test_bad_requests_get_problem_json(make_app: Any) -> None:
    client = await make_app()
    await seed(client)
    assert_problem(await client.post("/v1/route", json=payment(amount_minor=10.5)), 422, "validation_failed")
    assert_problem(await client.post("/v1/route", json=payment(amount_minor="100")), 422, "validation_failed")
    assert_problem(await client.post("/v1/route", json=payment(currency="XXX")), 422, "validation_failed")
    assert_problem(await client.post("/v1/route", json=payment(scene="telepathy")), 422, "validation_failed")
    assert_problem(
        await client.post("/v1/route", content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "malformed_request",
    )
    body = assert_problem(
        await client.post("/v1/route", json=payment(merchant_id="mch_nobody")), 422, "no_route_available"
    )
    assert {s["reason"] for s in body["skipped"]} == {"no_contract", "method_mismatch"}
    route = {
        "route_id": "wx_x",
        "method": "wechat",
        "scenes": ["jsapi"],
        "kind": "acquirer",
        "provider": "p",
        "connector": "c",
        "config_ref": "r",
    }
    assert_problem(await client.post("/v1/channel-routes", json=route), 401, "unauthorized")
    dup = {**route, "route_id": "wx_sp"}
    assert_problem(await client.post("/v1/channel-routes", json=dup, headers=ACTOR), 409, "channel_route_exists")
    bounds = {**route, "amount_min_minor": 500, "amount_max_minor": 100}
    body = assert_problem(
        await client.post("/v1/channel-routes", json=bounds, headers=ACTOR), 422, "channel_route_invalid"
    )
    assert body["errors"] == [{"field": "amount_max_minor", "message": "must be at least amount_min_minor"}]
    assert_problem(await client.get("/v1/channel-routes/nope"), 404, "channel_route_not_found")
    assert_problem(await client.get("/v1/rules/rul_nope"), 404, "rule_not_found")
    assert_problem(await client.get("/v1/fee-rates/fr_nope"), 404, "fee_rate_not_found")
    assert_problem(await client.get(f"/v1/contracts/{MERCHANT}/nope"), 404, "contract_not_found")
    assert_problem(
        await client.put(f"/v1/contracts/{MERCHANT}/nope", json={"sub_merchant_id": "s"}, headers=ACTOR),
        404,
        "channel_route_not_found",
    )
    assert_problem(await client.get("/v1/nothing-here"), 404, "route_not_found")


async def test_fee_rates_cannot_overlap_even_when_written_concurrently(make_app: Any) -> None:
    client = await make_app()
    await seed(client)
    overlapping = {"route_id": "wx_sp", "rate_bps": 30, "valid_from": "2026-06-01T00:00:00+08:00"}
    body = assert_problem(await client.post("/v1/fee-rates", json=overlapping, headers=ACTOR), 409, "fee_rate_overlap")
    assert body["conflicting_rate_id"].startswith("fr_")

    new_key = {"route_id": "wx_sp", "rate_bps": 20, "industry": "parking", "valid_from": "2026-06-01T00:00:00+08:00"}
    results = await asyncio.gather(*(client.post("/v1/fee-rates", json=new_key, headers=ACTOR) for _ in range(4)))
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409]

    rates = (await client.get("/v1/fee-rates", params={"route_id": "wx_sp"})).json()["data"]
    base = next(r for r in rates if r["industry"] is None)
    past = {"valid_until": "2026-01-02T00:00:00+08:00"}
    assert_problem(
        await client.post(f"/v1/fee-rates/{base['rate_id']}/expire", json=past, headers=ACTOR), 422, "fee_rate_invalid"
    )
    ended = {"valid_until": "2099-01-01T00:00:00+08:00", "expected_version": 1}
    r = await client.post(f"/v1/fee-rates/{base['rate_id']}/expire", json=ended, headers=ACTOR)
    assert r.status_code == 200 and r.json()["version"] == 2
    stale = {"valid_until": "2098-01-01T00:00:00+08:00", "expected_version": 1}
    assert_problem(
        await client.post(f"/v1/fee-rates/{base['rate_id']}/expire", json=stale, headers=ACTOR), 409, "version_conflict"
    )
    successor = {"route_id": "wx_sp", "rate_bps": 30, "valid_from": "2099-01-01T00:00:00+08:00"}
    assert (await client.post("/v1/fee-rates", json=successor, headers=ACTOR)).status_code == 201


async def test_rules_are_versioned_and_every_change_is_audited(make_app: Any) -> None:
    client = await make_app()
    await seed(client)
    rule = {
        "name": "no lianlian",
        "scope": "platform",
        "priority": 10,
        "action": {"kind": "deny", "route_ids": ["wx_lianlian"]},
    }
    created = (await client.post("/v1/rules", json=rule, headers=ACTOR)).json()
    rule_id = created["rule_id"]
    assert created["version"] == 1 and rule_id.startswith("rul_")
    changed = {**rule, "action": {"kind": "deny", "route_ids": ["wx_direct"]}, "expected_version": 1}
    r = await client.put(f"/v1/rules/{rule_id}", json=changed, headers={"X-Juhe-Actor": "alice"})
    assert r.status_code == 200 and r.json()["version"] == 2
    assert_problem(await client.put(f"/v1/rules/{rule_id}", json=changed, headers=ACTOR), 409, "version_conflict")
    assert_problem(
        await client.delete(f"/v1/rules/{rule_id}", params={"expected_version": 1}, headers=ACTOR),
        409,
        "version_conflict",
    )
    assert (
        await client.delete(f"/v1/rules/{rule_id}", params={"expected_version": 2}, headers={"X-Juhe-Actor": "bob"})
    ).status_code == 204
    history = (await client.get(f"/v1/rules/{rule_id}/history")).json()["data"]
    assert [(h["action"], h["actor"], h["version"]) for h in history] == [
        ("created", "ops@test", 1),
        ("updated", "alice", 2),
        ("deleted", "bob", 3),
    ]
    assert history[1]["before"]["action"]["route_ids"] == ["wx_lianlian"]
    assert history[1]["after"]["action"]["route_ids"] == ["wx_direct"]
    assert history[2]["after"] is None
    assert history[0]["config_version"] < history[1]["config_version"] < history[2]["config_version"]
    all_audit = (await client.get("/v1/audit", params={"resource_type": "channel_route"})).json()["data"]
    assert {a["resource_id"] for a in all_audit} == {r["route_id"] for r in ROUTES}


async def test_route_changes_publish_events_through_the_outbox(make_app: Any, routing_db: str) -> None:
    client = await make_app()
    await seed(client)
    route = (await client.get("/v1/channel-routes/wx_lianlian")).json()
    body = {k: v for k, v in route.items() if k not in ("route_id", "version")}
    body.update(enabled=False, expected_version=1)
    r = await client.put("/v1/channel-routes/wx_lianlian", json=body, headers=ACTOR)
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["version"] == 2
    decision = (await client.post("/v1/route", json=payment())).json()
    assert {s["route_id"]: s["reason"] for s in decision["skipped"]}["wx_lianlian"] == "disabled"
    engine = create_async_engine(routing_db)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT topic, key, event_type FROM outbox ORDER BY seq"))).all()
    finally:
        await engine.dispose()
    assert ("routing.channels", "wx_lianlian", "route.updated") in rows
    assert sum(1 for t, _, ty in rows if ty == "route.created" and t == "routing.channels") == len(ROUTES)
    assert sum(1 for _, _, ty in rows if ty == "fee_rate.created") == len(ROUTES)


async def test_simulate_explains_without_creating_anything(make_app: Any) -> None:
    client = await make_app()
    await seed(client)
    before = (await client.get("/v1/routing-settings")).json()["config_version"]
    night_rule = {
        "name": "night: direct only",
        "scope": "platform",
        "priority": 1,
        "conditions": {"time_of_day": {"start": "23:00", "end": "06:00"}},
        "action": {"kind": "allow", "route_ids": ["wx_direct"]},
    }
    assert (await client.post("/v1/rules", json=night_rule, headers=ACTOR)).status_code == 201
    noon = (await client.post("/v1/route/simulate", json=payment(at="2026-03-02T12:00:00+08:00"))).json()
    night = (await client.post("/v1/route/simulate", json=payment(at="2026-03-02T23:30:00+08:00"))).json()
    assert [c["route_id"] for c in noon["candidates"]] == ["wx_sp", "wx_lianlian", "wx_direct"]
    assert [c["route_id"] for c in night["candidates"]] == ["wx_direct"]
    assert noon["outcome"] == night["outcome"] == "routed"
    nobody = (await client.post("/v1/route/simulate", json=payment(merchant_id="mch_nobody"))).json()
    assert nobody["outcome"] == "no_route_available" and nobody["candidates"] == []
    after = (await client.get("/v1/routing-settings")).json()["config_version"]
    assert after == before + 1  # only the rule changed the configuration, not the simulations


async def test_settings_are_validated_and_change_the_scoring(make_app: Any) -> None:
    client = await make_app()
    await seed(client)
    r = await client.put("/v1/routing-settings", json={"candidates_max": 0}, headers=ACTOR)
    assert_problem(r, 422, "routing_settings_invalid")
    current = (await client.get("/v1/routing-settings")).json()
    r = await client.put(
        "/v1/routing-settings", json={"candidates_max": 1, "expected_version": current["version"]}, headers=ACTOR
    )
    assert r.status_code == 200 and r.json()["candidates_max"] == 1
    decision = (await client.post("/v1/route", json=payment())).json()
    assert [c["route_id"] for c in decision["candidates"]] == ["wx_sp"]


async def test_configuration_changes_are_attributed_to_the_gateway_identity(make_app: Any) -> None:
    from libs.common.internal_auth import mint_identity_token
    from libs.common.settings import DEMO_INTERNAL_TOKEN_SECRET

    client = await make_app()
    await seed(client)
    operator = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="k1", platform="plt_demo")
    merchant = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="k2", merchant_id=MERCHANT)
    rule = {"name": "deny", "scope": "platform", "priority": 1, "action": {"kind": "deny", "route_ids": ["wx_sp"]}}
    r = await client.post("/v1/rules", json=rule, headers={"X-Juhe-Identity": operator, "X-Juhe-Actor": "alice"})
    assert r.status_code == 201
    history = (await client.get(f"/v1/rules/{r.json()['rule_id']}/history")).json()["data"]
    assert history[0]["actor"] == "platform:plt_demo (alice)"
    assert_problem(await client.post("/v1/rules", json=rule, headers={"X-Juhe-Identity": merchant}), 403, "forbidden")
    assert_problem(
        await client.post("/v1/rules", json=rule, headers={"X-Juhe-Identity": "v1.bad.token"}), 401, "identity_invalid"
    )
