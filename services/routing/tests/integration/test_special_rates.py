"""Special-rate programmes over real HTTP and PostgreSQL: profiles, eligibility, applications whose approval
changes the rate routing quotes from its start, and the savings projection from recorded payments."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from libs.common.db import UnitOfWork, create_engine
from libs.common.events import Envelope
from services.routing.events.consumers import on_payment_outcome
from services.routing.events.types import PAYMENT_SUCCEEDED
from services.routing.tests.integration.conftest import ACTOR, MERCHANT, payment, seed

KIOSK = "mch_kiosk"


async def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_approved_application_is_the_rate_in_force_from_its_start(make_app: Callable[..., Any]) -> None:
    client = await make_app()
    await seed(client)
    apps = "/v1/special-rate-applications"

    # No profile yet: eligibility cannot be known.
    missing = await client.get(f"/v1/merchant-profiles/{MERCHANT}/special-rate-eligibility")
    assert missing.status_code == 404 and missing.json()["code"] == "merchant_profile_not_found"
    bad = await client.put(
        f"/v1/merchant-profiles/{MERCHANT}", json={"entity_type": "company", "industry_code": "82"}, headers=ACTOR
    )
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    await _ok(
        await client.put(
            f"/v1/merchant-profiles/{MERCHANT}", json={"entity_type": "company", "industry_code": "8211"}, headers=ACTOR
        )
    )
    checks = (await _ok(await client.get(f"/v1/merchant-profiles/{MERCHANT}/special-rate-eligibility")))["data"]
    assert [c["programme_id"] for c in checks if c["eligible"]] == ["wx_education"]
    catalogue = await _ok(await client.get("/v1/special-rate-programmes"))
    assert catalogue["example"] is True and all(p["example"] for p in catalogue["data"])

    refused = await client.post(apps, json={"merchant_id": MERCHANT, "programme_id": "ali_canteen"}, headers=ACTOR)
    assert refused.status_code == 422 and refused.json()["code"] == "special_rate_not_eligible"

    draft = await _ok(
        await client.post(
            apps,
            json={"merchant_id": MERCHANT, "programme_id": "wx_education", "documents": ["business_licence"]},
            headers=ACTOR,
        ),
        201,
    )
    assert draft["status"] == "draft"
    lacking = await client.post(f"{apps}/{draft['application_id']}/submit", headers=ACTOR)
    assert lacking.status_code == 422 and lacking.json()["missing_documents"] == [
        "school_operating_permit",
        "fee_schedule_approval",
    ]
    too_early = await client.post(f"{apps}/{draft['application_id']}/approve", json={}, headers=ACTOR)
    assert too_early.status_code == 409 and too_early.json()["code"] == "special_rate_application_state_conflict"

    full = await _ok(
        await client.post(
            apps,
            json={
                "merchant_id": MERCHANT,
                "programme_id": "wx_education",
                "documents": ["business_licence", "school_operating_permit", "fee_schedule_approval"],
            },
            headers=ACTOR,
        ),
        201,
    )
    app_id = full["application_id"]
    assert (await _ok(await client.post(f"{apps}/{app_id}/submit", headers=ACTOR)))["status"] == "submitted"
    start = datetime.now(UTC) + timedelta(days=2)
    approved = await _ok(
        await client.post(f"{apps}/{app_id}/approve", json={"effective_from": start.isoformat()}, headers=ACTOR)
    )
    assert approved["status"] == "approved" and len(approved["rate_ids"]) == 3  # the three WeChat routes
    again = await client.post(f"{apps}/{app_id}/reject", json={"reason": "late"}, headers=ACTOR)
    assert again.status_code == 409

    async def cheapest_fee(at: datetime) -> dict[str, Any]:
        decision = await _ok(await client.post("/v1/route/simulate", json=payment(at=at.isoformat())))
        fee: dict[str, Any] = decision["candidates"][0]["fee"]
        return fee

    before = await cheapest_fee(start - timedelta(minutes=1))
    assert before["rate_bps"] == 38 and before["basis"] == "route" and before["fee_minor"] == 38
    after = await cheapest_fee(start + timedelta(minutes=1))
    assert after["rate_bps"] == 20 and after["basis"] == "merchant" and after["fee_minor"] == 20
    assert after["rate_id"] in approved["rate_ids"]
    assert datetime.fromisoformat(after["valid_from"]) == start

    listed = await _ok(await client.get(apps, params={"merchant_id": MERCHANT, "status": "approved"}))
    assert [a["application_id"] for a in listed["data"]] == [app_id] and listed["has_more"] is False
    assert (await client.get(apps, params={"status": "granted"})).status_code == 422


async def test_the_savings_projection_equals_the_hand_computation(
    make_app: Callable[..., Any], routing_db: str
) -> None:
    """The data set of tests/unit/test_special_rates.py, arriving as `payment.succeeded` events."""
    client = await make_app()
    await seed(client)
    for merchant, entity, industry in ((MERCHANT, "company", "8211"), (KIOSK, "individual_business", "5499")):
        await _ok(
            await client.put(
                f"/v1/merchant-profiles/{merchant}",
                json={"entity_type": entity, "industry_code": industry},
                headers=ACTOR,
            )
        )
    now = datetime.now(UTC)
    events = [  # (payment, merchant, route, amount, fee, age)
        ("pay_s1", MERCHANT, "wx_sp", 10_000, 38, timedelta(days=1)),
        ("pay_s2", MERCHANT, "wx_sp", 12_345, 47, timedelta(days=2)),
        ("pay_s3", MERCHANT, "wx_direct", 25, 0, timedelta(days=29)),
        ("pay_s4", MERCHANT, "ali_direct", 50_000, 300, timedelta(hours=3)),
        ("pay_s1", MERCHANT, "wx_sp", 10_000, 38, timedelta(days=1)),  # redelivered: counted once
        ("pay_s5", MERCHANT, "wx_sp", 99_999, 380, timedelta(days=31)),  # outside the 30 days
        ("pay_k1", KIOSK, "ali_direct", 20_000, 120, timedelta(days=3)),
        ("pay_k2", KIOSK, "wx_direct", 3_333, 20, timedelta(days=4)),
        ("pay_k3", KIOSK, "ali_direct", 1_000, 6, timedelta(days=5)),
        ("pay_n1", "mch_noprofile", "wx_sp", 5_000, 30, timedelta(days=1)),
    ]
    engine = create_engine(routing_db)
    try:
        uow = UnitOfWork(engine, source="routing")
        for payment_id, merchant, route, amount, fee, age in events:
            data = {
                "payment_id": payment_id,
                "merchant_id": merchant,
                "route_id": route,
                "currency": "CNY",
                "amount_minor": amount,
                "fee_minor": fee,
                "succeeded_at": (now - age).isoformat(),
            }
            async with uow.begin() as tx:
                await on_payment_outcome(
                    tx, Envelope(type=PAYMENT_SUCCEEDED, source="cashier", subject=payment_id, data=data)
                )
    finally:
        await engine.dispose()

    report = await _ok(await client.get("/v1/special-rate-savings"))
    assert report["example_catalogue"] is True and report["currency"] == "CNY"
    assert (report["payment_count"], report["volume_minor"], report["fees_minor"]) == (7, 96_703, 531)
    assert report["best_savings_minor"] == 93 and report["merchants_without_profile"] == ["mch_noprofile"]
    by_merchant = {m["merchant_id"]: m for m in report["merchants"]}
    school = by_merchant[MERCHANT]
    assert (school["fees_minor"], school["best_savings_minor"]) == (385, 40)
    assert [(p["programme_id"], p["fees_minor"], p["projected_fees_minor"]) for p in school["programmes"]] == [
        ("wx_education", 85, 45)
    ]
    kiosk = (await _ok(await client.get("/v1/special-rate-savings", params={"merchant_id": KIOSK})))["merchants"]
    assert [(p["programme_id"], p["savings_minor"]) for p in kiosk[0]["programmes"]] == [
        ("ali_micro_merchant", 46),
        ("wx_micro_merchant", 7),
    ]
    unknown = await client.get("/v1/special-rate-savings", params={"merchant_id": "mch_nobody"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "merchant_profile_not_found"


async def test_refusals_and_a_concurrent_approval(make_app: Callable[..., Any]) -> None:
    client = await make_app()
    await seed(client)
    apps = "/v1/special-rate-applications"
    unknown = await client.get("/v1/special-rate-programmes/wx_nothing")
    assert unknown.status_code == 404 and unknown.json()["code"] == "special_rate_programme_not_found"
    nothing = await client.get(f"{apps}/spa_nothing")
    assert nothing.status_code == 404 and nothing.json()["code"] == "special_rate_application_not_found"
    no_profile = await client.post(apps, json={"merchant_id": "mch_new", "programme_id": "wx_parking"}, headers=ACTOR)
    assert no_profile.status_code == 404 and no_profile.json()["code"] == "merchant_profile_not_found"

    documents = ["business_licence", "parking_lot_filing", "site_photos"]

    async def submitted(merchant_id: str) -> str:
        await _ok(
            await client.put(
                f"/v1/merchant-profiles/{merchant_id}",
                json={"entity_type": "company", "industry_code": "7523"},
                headers=ACTOR,
            )
        )
        created = await _ok(
            await client.post(
                apps,
                json={"merchant_id": merchant_id, "programme_id": "wx_parking", "documents": documents},
                headers=ACTOR,
            ),
            201,
        )
        await _ok(await client.post(f"{apps}/{created['application_id']}/submit", headers=ACTOR))
        return str(created["application_id"])

    # A merchant with no contract on a WeChat route: nothing to put the rate on, nothing changes.
    lonely = await submitted("mch_lot")
    refused = await client.post(f"{apps}/{lonely}/approve", json={}, headers=ACTOR)
    assert refused.status_code == 422 and refused.json()["code"] == "special_rate_no_contracted_route"
    rejected = await _ok(await client.post(f"{apps}/{lonely}/reject", json={"reason": "no contract"}, headers=ACTOR))
    assert (rejected["status"], rejected["rejection_reason"], rejected["rate_ids"]) == ("rejected", "no contract", [])

    # Two operators approve the same application at once: one approval, one set of rates.
    contested = await submitted(MERCHANT)
    badly_named = await client.post(
        apps,
        json={"merchant_id": MERCHANT, "programme_id": "wx_parking", "documents": ["Business Licence.pdf"]},
        headers=ACTOR,
    )
    assert badly_named.status_code == 422 and badly_named.json()["code"] == "special_rate_application_invalid"
    backdated = await client.post(
        f"{apps}/{contested}/approve", json={"effective_from": "2026-01-01T00:00:00+08:00"}, headers=ACTOR
    )
    assert backdated.status_code == 422 and backdated.json()["code"] == "special_rate_application_invalid"
    answers = await asyncio.gather(
        *(client.post(f"{apps}/{contested}/approve", json={}, headers=ACTOR) for _ in range(2))
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    rates = await _ok(await client.get("/v1/fee-rates", params={"merchant_id": MERCHANT}))
    assert len(rates["data"]) == 3

    # A second approved application over the same period clashes with those rates: 409, nothing written.
    overlapping = await submitted(MERCHANT)
    clash = await client.post(f"{apps}/{overlapping}/approve", json={}, headers=ACTOR)
    assert clash.status_code == 409 and clash.json()["code"] == "fee_rate_overlap"
    assert (await _ok(await client.get(f"{apps}/{overlapping}")))["status"] == "submitted"
