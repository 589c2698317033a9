"""Bad input is refused with problem+json and creates nothing; merchants see only their own data;
lookups, cursor paging, merchant webhooks retried until acknowledged, and manual resend."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from libs.common.internal_auth import mint_identity_token
from services.cashier.api.routes.payments import FastCreateRoute
from services.cashier.domain.webhooks import SIGNATURE_HEADER, verify_signature
from services.cashier.store.tables import attempts, payments

from .conftest import Sandboxes, WebhookReceiver, paid_payment, qr_payment, wait_for


async def _counts(cashier: Any) -> tuple[int, int]:
    async with cashier.engine.connect() as conn:
        n_payments = (await conn.execute(select(func.count()).select_from(payments))).scalar_one()
        n_attempts = (await conn.execute(select(func.count()).select_from(attempts))).scalar_one()
    return int(n_payments), int(n_attempts)


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


async def test_bad_input_is_refused_and_creates_nothing(start_cashier: Any, sandboxes: Sandboxes) -> None:
    cashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)

    _problem(await cashier.post("/v1/payments", qr_payment(amount_minor=0)), 422, "validation_failed")
    _problem(await cashier.post("/v1/payments", qr_payment(amount_minor=-5)), 422, "validation_failed")
    _problem(await cashier.post("/v1/payments", {**qr_payment(), "amount_minor": 1.5}), 422, "validation_failed")
    _problem(await cashier.post("/v1/payments", qr_payment(currency="XXX")), 422, "validation_failed")
    _problem(await cashier.post("/v1/payments", qr_payment(currency="USD")), 422, "unsupported_currency")
    _problem(await cashier.post("/v1/payments", qr_payment(scene="page")), 422, "unsupported_scene")  # WeChat has none
    _problem(await cashier.post("/v1/payments", qr_payment(scene="wallet")), 422, "unsupported_scene")
    _problem(await cashier.post("/v1/payments", qr_payment(scene="barcode")), 422, "validation_failed")
    _problem(await cashier.post("/v1/payments", qr_payment(preferred_channels=["alipay"])), 422, "no_route_available")
    _problem(
        await cashier.post("/v1/payments", qr_payment(expire_at="2001-01-01T00:00:00+00:00")),
        422,
        "expiry_out_of_range",
    )
    _problem(await cashier.client.post("/v1/payments", json=qr_payment()), 401, "identity_missing")
    # Metadata limits (libs/common/metadata.py): 50 keys, keys 1..40 characters, string values ≤ 500.
    for metadata in (
        {f"k{i}": "v" for i in range(51)},
        {"k" * 41: "v"},
        {"": "v"},
        {"note": "x" * 501},
        {"count": 3},
    ):
        _problem(await cashier.post("/v1/payments", qr_payment(metadata=metadata)), 422, "metadata_invalid")
    assert await _counts(cashier) == (0, 0)

    first = await cashier.post("/v1/payments", qr_payment(order_no="A-1", amount_minor=100))
    assert first.status_code == 201
    same = await cashier.post("/v1/payments", qr_payment(order_no="A-1", amount_minor=100))
    assert same.status_code == 200 and same.json()["id"] == first.json()["id"]
    other = await cashier.post("/v1/payments", qr_payment(order_no="A-1", amount_minor=200))
    assert _problem(other, 409, "duplicate_merchant_order")["payment_id"] == first.json()["id"]
    assert await _counts(cashier) == (1, 1)


async def test_the_create_answers_alike_through_its_fast_route_and_fastapis(
    start_cashier: Any, sandboxes: Sandboxes
) -> None:
    """`POST /v1/payments` is served by `FastCreateRoute` (libs/common/web.py `JsonFastRoute`) for a valid body: its
    answers (201, a replay's 200, every identity refusal) are the bytes FastAPI's `create` route answers."""
    cashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    secret = cashier.cashier.settings.internal_token_secret.get_secret_value()
    body = qr_payment(order_no="F-1")
    service_token = mint_identity_token(secret, key_id="k", service="settlement")
    requests: list[dict[str, Any]] = [
        {"headers": cashier.headers()},  # a replay after the first
        {"headers": {}},  # 401 identity_missing
        {"headers": {"X-Juhe-Identity": "v1.forged.token"}},  # 401 identity_invalid
        {"headers": {"X-Juhe-Identity": service_token}},  # 403 merchant_scope_required
    ]
    first = await cashier.client.post("/v1/payments", json=body, headers=cashier.headers())
    assert first.status_code == 201, first.text
    fast_answers = [await cashier.client.post("/v1/payments", json=body, **request) for request in requests]
    routes = cashier.app.router.routes
    fast = next(route for route in routes if isinstance(route, FastCreateRoute))
    routes.remove(fast)
    try:
        fastapi_answers = [await cashier.client.post("/v1/payments", json=body, **request) for request in requests]
        fastapi_first = await cashier.post("/v1/payments", qr_payment(order_no="F-2"))
    finally:
        routes.insert(0, fast)
    assert [a.status_code for a in fast_answers] == [200, 401, 401, 403]
    for got, expected in zip(fast_answers, fastapi_answers, strict=True):
        assert (got.status_code, got.content) == (expected.status_code, expected.content)
        assert got.headers["content-type"] == expected.headers["content-type"]
    assert fast_answers[0].json() == first.json()
    assert fastapi_first.status_code == 201 and fastapi_first.json().keys() == first.json().keys()


async def test_sessions_and_links_apply_the_same_metadata_limits_with_room_for_their_own_keys(
    start_cashier: Any, sandboxes: Sandboxes
) -> None:
    """A checkout session's and a payment link's metadata becomes their payments' with keys of their own added,
    so they take fewer keys (48, 44); every other limit and the 422 `metadata_invalid` are the payment's."""
    cashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    session = {
        "merchant_order_no": "S-1",
        "amount_minor": 100,
        "currency": "CNY",
        "description": "Parking",
        "return_url": "https://shop.example/return",
    }
    link = {"currency": "CNY", "description": "Parking", "amount_minor": 100}
    for path, body, keys_max in (("/v1/checkout/sessions", session, 48), ("/v1/payment-links", link, 44)):
        for metadata in ({f"k{i}": "v" for i in range(keys_max + 1)}, {"k" * 41: "v"}, {"note": "x" * 501}):
            _problem(await cashier.post(path, {**body, "metadata": metadata}), 422, "metadata_invalid")
        full = await cashier.post(path, {**body, "metadata": {f"k{i}": "v" * 500 for i in range(keys_max)}})
        assert full.status_code == 201, full.text
    # A cursor the list never gave out is refused (libs.common.paging), not compared with the ids.
    for path in ("/v1/payment-links", "/v1/events"):
        _problem(await cashier.get(path, cursor="garbage"), 422, "validation_failed")


async def test_merchants_only_see_their_own_payments_and_lookups_page(start_cashier: Any, sandboxes: Sandboxes) -> None:
    cashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    ids = [
        (await cashier.post("/v1/payments", qr_payment(order_no=f"P-{i}", amount_minor=100 * (i + 1)))).json()["id"]
        for i in range(3)
    ]

    _problem(await cashier.get(f"/v1/payments/{ids[0]}", merchant_id="mch_other"), 404, "payment_not_found")
    _problem(await cashier.post(f"/v1/payments/{ids[0]}/close", merchant_id="mch_other"), 404, "payment_not_found")
    _problem(
        await cashier.post(f"/v1/payments/{ids[0]}/refunds", {"amount_minor": 1}, merchant_id="mch_other"),
        404,
        "payment_not_found",
    )
    assert (await cashier.get("/v1/payments", merchant_id="mch_other")).json()["data"] == []
    # A lookup on a list is a list: none found is an empty page, never a 404.
    other = (await cashier.get("/v1/payments", merchant_id="mch_other", merchant_order_no="P-1")).json()
    assert other == {"data": [], "has_more": False, "next_cursor": None}

    found = (await cashier.get("/v1/payments", merchant_order_no="P-1")).json()
    assert [p["id"] for p in found["data"]] == [ids[1]] and found["has_more"] is False
    assert len(found["data"][0]["attempts"]) == 1  # a list shows the attempts, as a read does
    page1 = (await cashier.get("/v1/payments", limit=2)).json()
    page2 = (await cashier.get("/v1/payments", limit=2, cursor=page1["next_cursor"])).json()
    assert [p["id"] for p in page1["data"] + page2["data"]] == list(reversed(ids))
    assert page1["has_more"] is True and all(p["attempts"] for p in page1["data"])
    assert page2["next_cursor"] is None and page2["has_more"] is False
    assert (await cashier.get("/v1/payments", status="succeeded")).json()["data"] == []
    # By amount (minor units, bounds inclusive): exact, or a range open at either end.
    for query, expected in (
        ({"amount_minor": 200}, [ids[1]]),
        ({"amount_minor_gte": 200}, [ids[2], ids[1]]),
        ({"amount_minor_lte": 200}, [ids[1], ids[0]]),
        ({"amount_minor_gte": 150, "amount_minor_lte": 250}, [ids[1]]),
        ({"amount_minor": 250}, []),
    ):
        assert [p["id"] for p in (await cashier.get("/v1/payments", **query)).json()["data"]] == expected, query
    assert (await cashier.get("/v1/payments", merchant_id="mch_other", amount_minor=200)).json()["data"] == []
    # Aggregates: counted and summed in SQL by China day, channel, status and currency; the merchant's own only.
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    totals = (await cashier.get("/v1/payments/aggregates", created_from=since)).json()
    assert totals["timezone"] == "Asia/Shanghai"
    assert sum(r["count"] for r in totals["data"]) == 3 and sum(r["amount_minor"] for r in totals["data"]) == 600
    china_today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    days = {(china_today - timedelta(days=1)).isoformat(), china_today.isoformat()}  # within the hour: today, or
    assert {r["channel"] for r in totals["data"]} == {"alipay"} and {r["day"] for r in totals["data"]} <= days
    assert (await cashier.get("/v1/payments/aggregates", merchant_id="mch_other", created_from=since)).json()[
        "data"
    ] == []
    for bad in (
        {},
        {"created_from": "2026-01-01T00:00:00"},  # no offset
        {"created_from": "2026-01-01T00:00:00+00:00", "created_to": "2026-06-01T00:00:00+00:00"},  # > 92 days
        {"created_from": "2026-01-02T00:00:00+00:00", "created_to": "2026-01-01T00:00:00+00:00"},
        {"created_from": since, "status": "succeeded"},
    ):
        r = await cashier.get("/v1/payments/aggregates", **bad)
        assert r.status_code == 422, (bad, r.text)
    # What a list would otherwise ignore or answer with an empty 200 is a 422 problem, nothing read.
    _problem(await cashier.get("/v1/payments", cursor="1; drop"), 422, "validation_failed")
    _problem(await cashier.get("/v1/payments", status="paid"), 422, "validation_failed")
    _problem(await cashier.get("/v1/payments", channel="paypal"), 422, "validation_failed")
    _problem(await cashier.get("/v1/payments", stauts="failed"), 422, "unknown_parameter")
    _problem(await cashier.get("/v1/payments", amount_minor=0), 422, "validation_failed")
    _problem(await cashier.get("/v1/payments", amount_minor="1.5"), 422, "validation_failed")
    _problem(await cashier.get("/v1/payments", amount_minor=100, amount_minor_lte=200), 422, "validation_failed")
    _problem(await cashier.get("/v1/payments", amount_minor_gte=300, amount_minor_lte=200), 422, "validation_failed")
    _problem(await cashier.get(f"/v1/payments/{ids[0]}/refunds", cursor="x"), 422, "validation_failed")
    _problem(await cashier.get(f"/v1/payments/{ids[0]}/webhook-deliveries", cursor="-1"), 422, "validation_failed")
    _problem(await cashier.get("/v1/events", after="1"), 422, "unknown_parameter")


async def test_webhook_retried_until_acknowledged_then_resent_on_request(
    start_cashier: Any, sandboxes: Sandboxes, webhook_receiver: WebhookReceiver
) -> None:
    cashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    webhook_receiver.fail_first = 3
    payment = await paid_payment(cashier, sandboxes, "alipay", 100)

    hooks = await wait_for(webhook_receiver.delivered, "an acknowledged webhook")
    assert webhook_receiver.answered[:4] == [500, 500, 500, 200]

    async def recorded() -> list[dict[str, Any]] | None:
        rows = (await cashier.get(f"/v1/payments/{payment['id']}/webhook-deliveries")).json()["data"]
        return rows if rows and rows[0]["status"] == "delivered" else None

    deliveries = await wait_for(recorded, "the delivery to be recorded")
    assert len(deliveries) == 1 and deliveries[0]["attempt_count"] == 4
    log = (await cashier.get(f"/v1/webhook-deliveries/{deliveries[0]['id']}")).json()
    assert [a["status_code"] for a in log["attempts"]] == [500, 500, 500, 200]

    resent = await cashier.post(f"/v1/webhook-deliveries/{deliveries[0]['id']}/resend")
    assert resent.status_code == 202
    again = await wait_for(lambda: len(webhook_receiver.delivered()) == 2 and webhook_receiver.delivered(), "resend")
    assert again[1].body == hooks[0].body  # the same event, re-signed with a fresh timestamp
    assert verify_signature(
        cashier.webhook_secret, again[1].headers[SIGNATURE_HEADER], again[1].body, now=int(time.time())
    )
    assert json.loads(again[1].body)["data"]["id"] == payment["id"]
    _problem(
        await cashier.post(f"/v1/webhook-deliveries/{deliveries[0]['id']}/resend", merchant_id="mch_other"),
        404,
        "webhook_delivery_not_found",
    )


async def test_admin_and_lookup_errors(start_cashier: Any, sandboxes: Sandboxes) -> None:
    cashier = await start_cashier()
    base = f"/v1/admin/merchants/{cashier.merchant_id}/channels"
    _problem(await cashier.client.put(f"{base}/paypal", json={"config": {}}), 404, "unknown_channel")
    _problem(
        await cashier.client.put(f"{base}/alipay", json={"config": {"app_id": "x"}}), 422, "invalid_channel_config"
    )
    _problem(await cashier.client.get("/v1/admin/merchants/mch_nobody"), 404, "merchant_not_found")
    _problem(await cashier.get("/v1/refunds/re_nope"), 404, "refund_not_found")
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    channels = (await cashier.client.get(base)).json()
    assert channels[0]["config"]["app_private_key_pem"] == "***"
    payment = await paid_payment(cashier, sandboxes, "alipay", 100)
    _problem(await cashier.post(f"/v1/payments/{payment['id']}/close"), 409, "payment_not_closable")
