"""Reconciliation exceptions pool on the real database, with a real cashier process for re-queries.

A day's run leaves mismatches; each is a work item: listed oldest first in cursor pages, assigned,
re-queried through the cashier (the cashier's answer recorded on the item), resolved with a reason and who,
and then final. Running the day again supersedes the earlier run's items. A cashier outage is 503
`cashier_unavailable` with nothing recorded.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import httpx

from libs.common.db import UnitOfWork
from services.settlement.app import create_app
from services.settlement.store import reconciliation as reconciliation_store

BASE = "/v1/settlement/reconciliation-exceptions"
OPERATOR = "ops@juhe.test"


async def _finished_run(uow: UnitOfWork, merchant_id: str, bill_date: date, items: list[dict[str, Any]]) -> str:
    """A finished run of one day with the given non-matched items (what `reconcile` stores)."""
    run_id = f"rec_{uuid.uuid4().hex[:12]}"
    async with uow.begin() as tx:
        await reconciliation_store.insert_run(tx.conn, run_id, "wechatpay", merchant_id, bill_date)
        await reconciliation_store.insert_items(
            tx.conn, [{"run_id": run_id, "resolution": "manual", "resolution_status": "open", **item} for item in items]
        )
        await reconciliation_store.finish_run(tx.conn, run_id, status="finished", counts={}, bill_lines=len(items))
    return run_id


def _item(key: str, outcome: str, payment_id: str | None) -> dict[str, Any]:
    return {
        "outcome": outcome,
        "kind": "payment",
        "key": key,
        "payment_id": payment_id,
        "merchant_order_no": f"o-{key}",
        "juhe_amount_minor": 1000,
        "channel_amount_minor": 1200,
    }


async def test_exception_lifecycle_with_a_real_cashier(
    migrated_database: Any, service_processes: Any, service_settings: Any, running_apps: Any, juhe_infra: Any
) -> None:
    cashier = service_processes(
        "cashier",
        {
            "database_url": await migrated_database("cashier"),
            "kafka_bootstrap_servers": juhe_infra.bootstrap,
            "role": "api",
        },
    )
    settings = service_settings(
        "settlement",
        database_url=await migrated_database("settlement"),
        cashier_url=cashier.base_url,
        ledger_url="http://127.0.0.1:9",
        role="api",
    )
    app = create_app(settings)
    client: httpx.AsyncClient = await running_apps(app)
    uow: UnitOfWork = app.state.runtime.uow
    merchant_id = f"mch_{uuid.uuid4().hex[:8]}"
    day = date(2026, 3, 2)
    await _finished_run(
        uow,
        merchant_id,
        day,
        [
            _item("a", "amount_mismatch", "pay_gone"),
            _item("b", "missing_in_juhe", None),
            _item("c", "status_mismatch", "pay_c"),
        ],
    )

    # Cursor pages, oldest first; the envelope every Juhe list answers.
    first = (await client.get(BASE, params={"merchant_id": merchant_id, "limit": 2})).json()
    assert [e["key"] for e in first["data"]] == ["a", "b"] and first["has_more"] is True
    rest = (
        await client.get(BASE, params={"merchant_id": merchant_id, "limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [e["key"] for e in rest["data"]] == ["c"] and rest == rest | {"has_more": False, "next_cursor": None}
    items: list[dict[str, Any]] = [*first["data"], *rest["data"]]
    a, b, c = items
    by_outcome = (await client.get(BASE, params={"merchant_id": merchant_id, "outcome": "missing_in_juhe"})).json()
    assert [e["key"] for e in by_outcome["data"]] == ["b"]
    # A filter value outside its enum or a cursor the list never gave out is 422, nothing read.
    for bad in ({"outcome": "missing"}, {"cursor": "abc"}, {"state": "closed"}):
        r = await client.get(BASE, params={"merchant_id": merchant_id, **bad})
        assert r.status_code == 422 and r.json()["code"] == "validation_failed", (bad, r.text)
    assert (
        a["state"] == "open" and a["ageing"] == "under_1d" and a["age_seconds"] >= 0 and a["bill_date"] == "2026-03-02"
    )

    # Running the day again supersedes the first run: only the new run's items are listed.
    await _finished_run(
        uow, merchant_id, day, [_item("a", "amount_mismatch", "pay_gone"), _item("b", "missing_in_juhe", None)]
    )
    listed = (await client.get(BASE, params={"merchant_id": merchant_id})).json()["data"]
    assert [e["key"] for e in listed] == ["a", "b"] and all(e["item_id"] > c["item_id"] for e in listed)
    assert (await client.get(f"{BASE}/{a['item_id']}")).json()["superseded"] is True
    a, b = listed

    # Assign, then re-query: the cashier really answers (it has no such payment) and the answer is kept.
    assigned = await client.post(f"{BASE}/{a['item_id']}/assign", json={"assignee": "li@juhe.test", "actor": OPERATOR})
    assert assigned.status_code == 200 and assigned.json()["state"] == "assigned", assigned.text
    mine = (await client.get(BASE, params={"assignee": "li@juhe.test", "state": "assigned"})).json()["data"]
    assert [e["item_id"] for e in mine] == [a["item_id"]]
    requeried = await client.post(f"{BASE}/{a['item_id']}/requery", json={"actor": "li@juhe.test"})
    assert requeried.status_code == 200, requeried.text
    assert requeried.json()["requery_count"] == 1
    assert requeried.json()["last_requery"] == {
        "payment_id": "pay_gone",
        "http_status": 404,
        "code": "payment_not_found",
    }

    # A line the channel billed that Juhe never saw has no payment to re-query.
    refused = await client.post(f"{BASE}/{b['item_id']}/requery", json={"actor": OPERATOR})
    assert refused.status_code == 422 and refused.json()["code"] == "reconciliation_exception_not_requeryable"

    # Resolve with a reason and who; final from then on, and out of the unresolved pool.
    blank = await client.post(f"{BASE}/{a['item_id']}/resolve", json={"reason": "  ", "actor": OPERATOR})
    assert blank.status_code == 422 and blank.json()["code"] == "validation_failed"
    done = await client.post(
        f"{BASE}/{a['item_id']}/resolve", json={"reason": "channel refunded the difference", "actor": "li@juhe.test"}
    )
    assert done.status_code == 200 and done.json()["state"] == "resolved", done.text
    detail = (await client.get(f"{BASE}/{a['item_id']}")).json()
    assert (detail["resolved_by"], detail["resolution_reason"]) == ("li@juhe.test", "channel refunded the difference")
    assert [(x["action"], x["actor"]) for x in detail["actions"]] == [
        ("assigned", OPERATOR),
        ("requeried", "li@juhe.test"),
        ("resolved", "li@juhe.test"),
    ]
    for verb, body in (
        ("resolve", {"reason": "again", "actor": OPERATOR}),
        ("requery", {"actor": OPERATOR}),
        ("assign", {"assignee": OPERATOR, "actor": OPERATOR}),
    ):
        again = await client.post(f"{BASE}/{a['item_id']}/{verb}", json=body)
        assert again.status_code == 409 and again.json()["code"] == "reconciliation_exception_resolved", verb
    unresolved = (await client.get(BASE, params={"merchant_id": merchant_id})).json()["data"]
    assert [e["item_id"] for e in unresolved] == [b["item_id"]]
    resolved = (await client.get(BASE, params={"merchant_id": merchant_id, "state": "resolved"})).json()["data"]
    assert [e["item_id"] for e in resolved] == [a["item_id"]]

    # Refusals: unknown item, unknown state filter, a merchant identity.
    missing = await client.post(f"{BASE}/999999999/resolve", json={"reason": "x", "actor": OPERATOR})
    assert missing.status_code == 404 and missing.json()["code"] == "reconciliation_exception_not_found"
    assert (await client.get(BASE, params={"state": "closed"})).status_code == 422
    typo = await client.get(BASE, params={"stat": "open"})
    assert typo.status_code == 422 and typo.json()["code"] == "unknown_parameter"
    merchant = await client.get(BASE, headers={"X-Juhe-Merchant-Id": merchant_id})
    assert merchant.status_code == 403 and merchant.json()["code"] == "forbidden"


async def test_requery_with_the_cashier_down_records_nothing(
    migrated_database: Any, service_settings: Any, running_apps: Any
) -> None:
    settings = service_settings(
        "settlement",
        database_url=await migrated_database("settlement"),
        cashier_url="http://127.0.0.1:9",
        ledger_url="http://127.0.0.1:9",
        role="api",
    )
    app = create_app(settings)
    client: httpx.AsyncClient = await running_apps(app)
    await _finished_run(app.state.runtime.uow, "mch_down", date(2026, 3, 3), [_item("z", "status_mismatch", "pay_z")])
    (item,) = (await client.get(BASE)).json()["data"]
    down = await client.post(f"{BASE}/{item['item_id']}/requery", json={"actor": OPERATOR})
    assert down.status_code == 503, down.text
    assert down.json()["code"] == "cashier_unavailable" and down.json()["retryable"] is True
    after = (await client.get(f"{BASE}/{item['item_id']}")).json()
    assert after["requery_count"] == 0 and after["last_requery"] is None and after["actions"] == []
