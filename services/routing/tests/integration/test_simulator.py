"""The routing simulator over real HTTP and PostgreSQL: the chosen route, every route of the preferred
methods kept (with its fee and a special rate named) or dropped (circuit open, contract disabled, amount
limit), and nothing written by asking."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from libs.common.db import UnitOfWork, create_engine
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.outbox_tables import outbox
from services.routing.domain.decide import RoutingSettings
from services.routing.domain.health import Outcome
from services.routing.store.health import AttemptOutcome, record_outcome
from services.routing.store.tables import config_audit
from services.routing.tests.integration.conftest import ACTOR, MERCHANT, seed

SIMULATIONS = "/v1/routing-simulations"


async def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def _written(uow: UnitOfWork) -> tuple[int, int]:
    async with uow.read() as conn:
        events = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
        audits = (await conn.execute(select(func.count()).select_from(config_audit))).scalar_one()
    return int(events), int(audits)


async def test_the_simulator_explains_every_route_and_writes_nothing(
    make_app: Callable[..., Any], routing_db: str
) -> None:
    client = await make_app()
    await seed(client)
    small = {
        "route_id": "wx_small",
        "method": "wechat",
        "kind": "acquirer",
        "provider": "lianlian",
        "connector": "lianlian",
        "config_ref": "cfg/wx_small",
        "scenes": ["jsapi"],
        "amount_max_minor": 5_000,
    }
    await _ok(await client.post("/v1/channel-routes", json=small, headers=ACTOR), 201)
    rate = {"route_id": "wx_small", "rate_bps": 10, "valid_from": "2026-01-01T00:00:00+08:00"}
    await _ok(await client.post("/v1/fee-rates", json=rate, headers=ACTOR), 201)
    await _ok(await client.put(f"/v1/contracts/{MERCHANT}/wx_small", json={"sub_merchant_id": "s"}, headers=ACTOR))
    await _ok(
        await client.put(
            f"/v1/contracts/{MERCHANT}/wx_lianlian",
            json={"sub_merchant_id": "sub_wx_lianlian", "enabled": False, "expected_version": 1},
            headers=ACTOR,
        )
    )
    # A special rate for the school on the WeChat routes, from tomorrow.
    profile = {"entity_type": "company", "industry_code": "8211"}
    await _ok(await client.put(f"/v1/merchant-profiles/{MERCHANT}", json=profile, headers=ACTOR))
    documents = ["business_licence", "school_operating_permit", "fee_schedule_approval"]
    application = await _ok(
        await client.post(
            "/v1/special-rate-applications",
            headers=ACTOR,
            json={"merchant_id": MERCHANT, "programme_id": "wx_education", "documents": documents},
        ),
        201,
    )
    app_path = f"/v1/special-rate-applications/{application['application_id']}"
    await _ok(await client.post(f"{app_path}/submit", headers=ACTOR))
    start = datetime.now(UTC) + timedelta(days=1)
    await _ok(await client.post(f"{app_path}/approve", json={"effective_from": start.isoformat()}, headers=ACTOR))
    # wx_direct's circuit opens: failures counted the way the consumer counts them.
    engine = create_engine(routing_db)
    try:
        uow = UnitOfWork(engine, source="routing")
        now = datetime.now(UTC)
        for i in range(RoutingSettings().health.consecutive_failures_to_open):
            async with uow.begin() as tx:
                await record_outcome(
                    tx,
                    AttemptOutcome("wx_direct", Outcome.ERROR, now, attempt_id=f"sim{i}"),
                    now=now,
                    settings=RoutingSettings(),
                )
        before = await _written(uow)

        question = {
            "merchant_id": MERCHANT,
            "amount_minor": 10_000,
            "scene": "jsapi",
            "payer_client": "wechat",
            "methods": ["wechat", "alipay"],
            "at": (start + timedelta(hours=1)).isoformat(),
        }
        answer = await _ok(await client.get(SIMULATIONS, params=question))
        assert answer["outcome"] == "routed" and answer["side_effects"] is False
        assert answer["chosen"]["method"] == "wechat" and answer["chosen"]["route_id"] == "wx_sp"
        assert answer["chosen"]["fee_minor"] == 20 and answer["chosen"]["rate_bps"] == 20
        wechat, alipay = answer["methods"]
        assert [k["route_id"] for k in wechat["kept"]] == ["wx_sp", "wx_direct"]
        kept, later = wechat["kept"]
        assert kept["special_rate"] == {"application_id": application["application_id"], "programme_id": "wx_education"}
        assert kept["fee"]["basis"] == "merchant" and kept["circuit_state"] == "closed" and kept["explanation"]
        # A day on, wx_direct's circuit is half-open: kept, behind the healthy route.
        assert later["circuit_state"] == "half_open" and later["special_rate"] is not None
        assert {d["route_id"]: d["reason"] for d in wechat["dropped"]} == {
            "wx_lianlian": "contract_disabled",
            "wx_small": "amount_above_max",
        }
        assert all(d["explanation"] for d in wechat["dropped"])
        assert [k["route_id"] for k in alipay["kept"]] == ["ali_direct"] and alipay["dropped"] == []
        assert alipay["kept"][0]["special_rate"] is None

        # Now, before the special rate starts: the routes' own rates quote, the open circuit drops wx_direct,
        # and a small amount fits wx_small.
        small = question | {"at": now.isoformat(), "amount_minor": 1_000, "methods": ["wechat"]}
        earlier = (await _ok(await client.get(SIMULATIONS, params=small)))["methods"][0]
        first = earlier["kept"][0]
        assert (first["route_id"], first["fee"]["basis"], first["special_rate"]) == ("wx_small", "route", None)
        assert {d["route_id"]: d["reason"] for d in earlier["dropped"]} == {
            "wx_direct": "circuit_open",
            "wx_lianlian": "contract_disabled",
        }

        # Nothing can take it: the outcome says why, still 200 (a question, not a payment).
        none = await _ok(await client.get(SIMULATIONS, params=question | {"methods": ["ecny"]}))
        assert none["outcome"] == "no_route_available" and none["chosen"] is None

        assert await _written(uow) == before  # no event, no audit row: asking changed nothing
    finally:
        await engine.dispose()


async def test_the_simulator_refuses_bad_questions_and_merchants(
    make_app: Callable[..., Any], service_settings: Callable[..., Any], routing_db: str
) -> None:
    client = await make_app()
    ok = {"merchant_id": MERCHANT, "amount_minor": 100, "scene": "jsapi", "methods": ["wechat"]}
    bad: dict[str, Any]
    for bad in (
        {"amount_minor": -1},
        {"amount_minor": 1.5},
        {"methods": []},
        {"methods": ["cash"]},
        {"scene": "teleport"},
        {"currency": "cny"},
    ):
        refused = await client.get(SIMULATIONS, params=ok | bad)
        assert refused.status_code == 422 and refused.json()["code"] == "validation_failed", bad
    secret = service_settings("routing", database_url=routing_db).internal_token_secret.get_secret_value()
    merchant = {IDENTITY_HEADER: mint_identity_token(secret, key_id="test", merchant_id=MERCHANT)}
    forbidden = await client.get(SIMULATIONS, params=ok, headers=merchant)
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"
