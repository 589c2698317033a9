"""Two app instances on one database decide identically, and see each other's changes at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text

from libs.common.db import UnitOfWork, create_engine
from services.routing.domain.decide import RoutingSettings
from services.routing.domain.health import Outcome
from services.routing.store.health import AttemptOutcome, record_outcome
from services.routing.store.tables import route_health_version
from services.routing.tests.integration.conftest import ACTOR, MERCHANT, payment, seed


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "decided_at"}


async def test_two_replicas_give_identical_decisions(make_app: Any, routing_db: str) -> None:
    replica_a = await make_app()
    replica_b = await make_app()
    await seed(replica_a)
    split = {
        "name": "70/30 between the acquirers",
        "scope": "platform",
        "priority": 5,
        "conditions": {"amount_min_minor": 20_000},
        "action": {"kind": "split", "weights": {"wx_lianlian": 70, "wx_direct": 30}},
    }
    assert (await replica_a.post("/v1/rules", json=split, headers=ACTOR)).status_code == 201

    # Shared health state, written the way the consumer writes it: wx_sp is flaky.
    engine = create_engine(routing_db)
    try:
        uow = UnitOfWork(engine, source="routing")
        now = datetime.now(UTC)
        for i in range(30):
            outcome = Outcome.SUCCEEDED if i % 3 else Outcome.ERROR
            async with uow.begin() as tx:
                await record_outcome(
                    tx,
                    AttemptOutcome(
                        "wx_sp", outcome, now - timedelta(seconds=i), latency_ms=200 + i, attempt_id=f"a{i}"
                    ),
                    now=now,
                    settings=RoutingSettings(),
                )
    finally:
        await engine.dispose()

    firsts: dict[str, int] = {}
    for i in range(60):
        body = payment(
            f"pay_{i:03d}", amount_minor=5_000 + i * 500, exclude_route_ids=["wx_direct"] if i % 7 == 0 else []
        )
        a, b = await replica_a.post("/v1/route", json=body), await replica_b.post("/v1/route", json=body)
        assert a.status_code == b.status_code == 200
        assert comparable(a.json()) == comparable(b.json())
        first = a.json()["candidates"][0]
        firsts[first["placement"]] = firsts.get(first["placement"], 0) + 1
        sp = next(c for c in a.json()["candidates"] if c["route_id"] == "wx_sp")
        assert sp["attempts_in_window"] == 30
    assert set(firsts) == {"split", "score"}  # both paths were compared

    # A change through one replica is used by the other on its very next decision.
    deny = {"name": "no sp", "scope": "platform", "priority": 1, "action": {"kind": "deny", "route_ids": ["wx_sp"]}}
    assert (await replica_b.post("/v1/rules", json=deny, headers=ACTOR)).status_code == 201
    a = (await replica_a.post("/v1/route", json=payment("pay_x"))).json()
    b = (await replica_b.post("/v1/route", json=payment("pay_x"))).json()
    assert comparable(a) == comparable(b)
    assert {s["route_id"]: s["reason"] for s in a["skipped"]}["wx_sp"] == "denied_by_rule"


async def test_a_held_snapshot_is_replaced_on_the_next_decision_after_any_change(
    make_app: Any, routing_db: str
) -> None:
    """Each replica keeps its last snapshot per merchant and reuses it while `config_version` and `health_version`
    are unchanged (store/snapshot.py): a change by any writer, however it is made, is used by the next decision."""
    replica_a = await make_app()
    replica_b = await make_app()
    await seed(replica_a)

    def skipped(body: dict[str, Any]) -> dict[str, str]:
        return {s["route_id"]: s["reason"] for s in body["skipped"]}

    def in_window(body: dict[str, Any], route_id: str) -> int:
        return int(next(c for c in body["candidates"] if c["route_id"] == route_id)["attempts_in_window"])

    first = (await replica_a.post("/v1/route", json=payment("pay_1"))).json()
    assert in_window(first, "wx_sp") == 0 and "wx_sp" not in skipped(first)
    assert comparable((await replica_a.post("/v1/route", json=payment("pay_1"))).json()) == comparable(first)

    engine = create_engine(routing_db)
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(select(route_health_version.c.health_version))).scalar_one()
        # One transaction of three outcomes (the consumer's batch): the version moves once, at its commit.
        now = datetime.now(UTC)
        async with UnitOfWork(engine, source="routing").begin() as tx:
            for i in range(3):
                outcome = AttemptOutcome("wx_sp", Outcome.SUCCEEDED, now, latency_ms=100, attempt_id=f"b{i}")
                await record_outcome(tx, outcome, now=now, settings=RoutingSettings())
        async with engine.connect() as conn:
            assert (await conn.execute(select(route_health_version.c.health_version))).scalar_one() == version + 1
        assert in_window((await replica_a.post("/v1/route", json=payment("pay_2"))).json(), "wx_sp") == 3

        # A writer outside the store (here plain SQL) bumps the version too: the trigger, not the writer, does it.
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE route_health SET state = 'open', changed_at = now() WHERE route_id = 'wx_sp'")
            )
        assert skipped((await replica_a.post("/v1/route", json=payment("pay_3"))).json())["wx_sp"] == "circuit_open"
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE route_health, route_health_buckets"))
        assert "wx_sp" not in skipped((await replica_a.post("/v1/route", json=payment("pay_4"))).json())
    finally:
        await engine.dispose()

    # A contract disabled through the other replica is skipped by this one's very next decision.
    disable = {"sub_merchant_id": "sub_wx_sp", "enabled": False, "expected_version": 1}
    assert (await replica_b.put(f"/v1/contracts/{MERCHANT}/wx_sp", json=disable, headers=ACTOR)).status_code == 200
    assert skipped((await replica_a.post("/v1/route", json=payment("pay_5"))).json())["wx_sp"] == "contract_disabled"
