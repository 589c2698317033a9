"""Coupon imports for services/migration: only its identity; one result per item (created, duplicate,
rejected with a reason); the user's code kept and redeemable at the price of its migrated stock; the same
batch again writes nothing; voiding a run leaves used and locked coupons and counts them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.marketing.tests.integration.conftest import Marketing, code

IMPORTS = "/v1/internal/marketing/imports/coupons"
VOID = "/v1/internal/marketing/imports/coupons/void"
LOCKS = "/v1/internal/marketing/locks"


def _coupon(source_id: str, user_id: str, coupon_code: str, face: int = 500, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "source_id": source_id,
        "user_id": user_id,
        "code": coupon_code,
        "face_value_minor": face,
        "currency": "CNY",
        "threshold_minor": 2000,
        "valid_from": (now - timedelta(days=10)).isoformat(),
        "valid_until": (now + timedelta(days=30)).isoformat(),
        **overrides,
    }


async def test_only_the_migration_service_may_import(marketing: Marketing) -> None:
    body = {"run_id": "mig_x", "coupons": [_coupon("c1", "usr_1", "OLD-0001")]}
    for headers in (marketing.operator(), marketing.headers(service="cashier"), marketing.user()):
        answer = await marketing.post(IMPORTS, body, headers)
        assert answer.status_code == 403 and code(answer) == "forbidden", answer.text
    too_many = {"run_id": "mig_x", "coupons": [_coupon(f"c{i}", "usr_1", f"OLD-{i:05d}") for i in range(1001)]}
    answer = await marketing.post(IMPORTS, too_many, marketing.headers(service="migration"))
    assert answer.status_code == 422 and code(answer) == "validation_failed"
    mine = await marketing.get("/v1/marketing/me/coupons", marketing.user())
    assert mine.json()["data"] == []


async def test_import_redeem_replay_and_void(marketing: Marketing) -> None:
    me = marketing.headers(service="migration")
    claimed = await marketing.claim((await marketing.running_stock())["stock_id"], user_id="usr_9")
    assert claimed.status_code == 201
    past = datetime.now(UTC) - timedelta(days=1)
    batch = [
        _coupon("c1", "usr_1", "OLD-0001"),
        _coupon("c2", "usr_1", "OLD-0002", face=800, merchant_ids=["mch_a"]),
        _coupon("c3", "usr_2", "OLD-0003"),
        _coupon("c4", "usr_2", "OLD-0004", valid_until=past.isoformat()),
        _coupon("c5", "usr_2", claimed.json()["code"]),
        _coupon("c1", "usr_3", "OLD-0005"),
        _coupon("c6", "usr_3", "OLD-0001"),
    ]
    answer = await marketing.post(IMPORTS, {"run_id": "mig_1", "coupons": batch}, me)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [(r["source_id"], r["status"], r["reason"]) for r in results] == [
        ("c1", "created", None),
        ("c2", "created", None),
        ("c3", "created", None),
        ("c4", "rejected", "coupon_expired"),
        ("c5", "rejected", "code_taken"),
        ("c1", "rejected", "source_id_repeated"),
        ("c6", "rejected", "code_taken"),
    ]
    again = await marketing.post(IMPORTS, {"run_id": "mig_1", "coupons": batch[:3]}, me)
    assert [r["status"] for r in again.json()["results"]] == ["duplicate"] * 3
    assert [r["coupon_id"] for r in again.json()["results"]] == [r["coupon_id"] for r in results[:3]]
    other_user = await marketing.post(IMPORTS, {"run_id": "mig_1", "coupons": [_coupon("c1", "usr_7", "OLD-0001")]}, me)
    assert other_user.json()["results"][0]["reason"] == "source_id_conflict"

    mine = (await marketing.get("/v1/marketing/me/coupons", marketing.user("usr_1"))).json()["data"]
    assert sorted((c["code"], c["face_value_minor"], c["source"], c["status"]) for c in mine) == [
        ("OLD-0001", 500, "migration", "available"),
        ("OLD-0002", 800, "migration", "available"),
    ]
    assert mine[0]["stock_id"] != mine[1]["stock_id"] and mine[0]["campaign_id"] == mine[1]["campaign_id"]
    stats = await marketing.get(f"/v1/marketing/campaigns/{mine[0]['campaign_id']}/stats", marketing.operator())
    assert stats.status_code == 200, stats.text
    stock = await marketing.get(f"/v1/marketing/stocks/{mine[0]['stock_id']}", marketing.operator())
    assert stock.json()["status"] == "ended"

    lock = {
        "payment_id": "pay_1",
        "coupon_code": "OLD-0002",
        "user_id": "usr_1",
        "merchant_id": "mch_a",
        "order_amount_minor": 3000,
        "currency": "CNY",
    }
    locked = await marketing.post(LOCKS, lock, marketing.headers(service="cashier"))
    assert locked.status_code == 201, locked.text
    assert locked.json()["discount_minor"] == 800
    elsewhere = {**lock, "payment_id": "pay_2", "coupon_code": "OLD-0001", "order_amount_minor": 1000}
    below = await marketing.post(LOCKS, elsewhere, marketing.headers(service="cashier"))
    assert code(below) == "threshold_not_met"

    first = await marketing.post(VOID, {"run_id": "mig_1", "limit": 1}, me)
    assert first.status_code == 200, first.text
    assert first.json() | {"run_id": None} == {
        "run_id": None,
        "voided_count": 1,
        "voided_total": 1,
        "used_count": 1,
        "used_face_value_minor": {"CNY": 800},
        "remaining_count": 1,
    }
    rest = (await marketing.post(VOID, {"run_id": "mig_1"}, me)).json()
    assert (rest["voided_count"], rest["voided_total"], rest["remaining_count"]) == (1, 2, 0)
    replay = (await marketing.post(VOID, {"run_id": "mig_1"}, me)).json()
    assert (replay["voided_count"], replay["voided_total"], replay["used_count"]) == (0, 2, 1)
    voided = await marketing.post(
        LOCKS, {**elsewhere, "order_amount_minor": 5000}, marketing.headers(service="cashier")
    )
    assert voided.status_code == 409 and code(voided) == "coupon_voided"
    claimed_now = await marketing.get(
        f"/v1/marketing/me/coupons/{claimed.json()['coupon_id']}", marketing.user("usr_9")
    )
    assert claimed_now.json()["status"] == "available"  # another campaign's coupon is untouched
