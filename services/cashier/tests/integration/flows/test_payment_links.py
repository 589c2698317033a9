"""Payment links on the real cashier, PostgreSQL and the WeChat Pay sandbox: a merchant creates a link, each payer
opens a fresh checkout session from it (payer-entered amount within bounds, a validated plate number stored on the
payment), a single-use link holds its one use while a session is open and gives it back when that expires, a
reusable link is paid twice, a deactivated link opens nothing; every refusal is a problem+json with its code."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from .conftest import RunningCashier, Sandboxes, approve, wait_for


async def _ready(start_cashier: Any, sandboxes: Sandboxes) -> RunningCashier:
    cashier: RunningCashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    return cashier


def _slug(link: dict[str, Any]) -> str:
    return str(link["url"].rsplit("/", 1)[1])


async def _open(cashier: RunningCashier, slug: str, request_id: str | None = None, **body: Any) -> Any:
    return await cashier.client.post(
        f"/v1/checkout/pages/links/{slug}/sessions", json={"request_id": request_id or uuid.uuid4().hex[:20], **body}
    )


async def _pay(cashier: RunningCashier, sandboxes: Sandboxes, token: str) -> dict[str, Any]:
    started = await cashier.client.post(
        f"/v1/checkout/pages/{token}/payments",
        json={"method": "wechatpay", "scene": "native_qr", "request_id": f"req-{uuid.uuid4().hex[:12]}"},
    )
    assert started.status_code == 200, started.text
    payment: dict[str, Any] = started.json()["payment"]
    await approve(sandboxes, "wechatpay", (await cashier.payment(payment["id"]))["attempts"][0]["out_trade_no"])

    async def completed() -> dict[str, Any] | None:
        view: dict[str, Any] = (await cashier.client.get(f"/v1/checkout/pages/{token}")).json()
        return view if view["status"] == "completed" else None

    await wait_for(completed, "the session to complete")
    return payment


async def test_payer_entered_amount_and_plate_on_a_reusable_link(
    start_cashier: Any, sandboxes: Sandboxes, clean_faults: None
) -> None:
    cashier = await _ready(start_cashier, sandboxes)
    bad = await cashier.post(
        "/v1/payment-links",
        {"currency": "CNY", "description": "Parking", "amount_min_minor": 500, "amount_max_minor": 100},
    )
    assert bad.status_code == 422 and bad.json()["code"] == "payment_link_amount_invalid"
    unknown_field = await cashier.post(
        "/v1/payment-links", {"currency": "CNY", "description": "x", "payer_fields": ["shoe_size"]}
    )
    assert unknown_field.status_code == 422 and unknown_field.json()["code"] == "validation_failed"
    naive = await cashier.post(
        "/v1/payment-links", {"currency": "CNY", "description": "x", "expires_at": "2030-01-01T00:00:00"}
    )
    assert naive.status_code == 422 and naive.json()["code"] == "validation_failed"  # a deadline needs its zone
    past = await cashier.post(
        "/v1/payment-links", {"currency": "CNY", "description": "x", "expires_at": "2020-01-01T00:00:00Z"}
    )
    assert past.status_code == 422 and past.json()["code"] == "validation_failed"
    created = await cashier.post(
        "/v1/payment-links",
        {
            "currency": "CNY",
            "description": "停车缴费 Parking",
            "amount_min_minor": 100,
            "amount_max_minor": 50_000,
            "payer_fields": ["plate_number"],
            "metadata": {"gate": "north"},
        },
    )
    assert created.status_code == 201, created.text
    link = created.json()
    slug = _slug(link)
    assert link["status"] == "active" and link["amount_minor"] is None and slug.startswith("pl_")
    assert link["poster_url"] == f"{link['url']}/poster.svg" and link["id"] not in link["url"]

    page = (await cashier.client.get(f"/v1/checkout/pages/links/{slug}")).json()
    assert page["state"] == "active" and page["payer_fields"] == ["plate_number"]
    assert page["methods"] == ["wechatpay"]  # what its poster names: the merchant's one channel
    assert page["amount_min_minor"] == 100 and page["merchant_name"] == cashier.merchant_id
    assert (await cashier.client.get("/v1/checkout/pages/links/pl_" + "x" * 22)).json()["code"] == (
        "payment_link_not_found"
    )

    too_much = await _open(cashier, slug, amount_minor=50_001, payer_fields={"plate_number": "沪A12345"})
    assert too_much.status_code == 422 and too_much.json()["code"] == "payment_link_amount_invalid"
    no_amount = await _open(cashier, slug, payer_fields={"plate_number": "沪A12345"})
    assert no_amount.json()["code"] == "payment_link_amount_invalid"
    bad_plate = await _open(cashier, slug, amount_minor=1_200, payer_fields={"plate_number": "<b>1</b>"})
    assert bad_plate.status_code == 422 and bad_plate.json()["code"] == "payment_link_field_invalid"
    missing = await _open(cashier, slug, amount_minor=1_200)
    assert missing.json()["code"] == "payment_link_field_invalid"

    paid = []
    for amount, plate in ((1_200, "沪a 12345"), (3_400, "粤B·D12345")):  # normalised: 沪A12345, 粤BD12345
        opened = await _open(cashier, slug, amount_minor=amount, payer_fields={"plate_number": plate})
        assert opened.status_code == 201, opened.text
        paid.append(await _pay(cashier, sandboxes, opened.json()["token"]))
    first, second = [await cashier.payment(p["id"]) for p in paid]
    assert first["amount_minor"] == 1_200 and first["metadata"]["plate_number"] == "沪A12345"
    assert second["amount_minor"] == 3_400 and second["metadata"]["plate_number"] == "粤BD12345"
    assert first["metadata"]["payment_link_id"] == link["id"] and first["metadata"]["gate"] == "north"
    assert (await cashier.get(f"/v1/payment-links/{link['id']}")).json()["uses_completed"] == 2

    deactivated = (await cashier.post(f"/v1/payment-links/{link['id']}/deactivate")).json()
    assert deactivated["status"] == "deactivated"
    refused = await _open(cashier, slug, amount_minor=1_000, payer_fields={"plate_number": "沪A12345"})
    assert refused.status_code == 409 and refused.json()["code"] == "payment_link_inactive"
    listed = (await cashier.get("/v1/payment-links", limit=1)).json()
    assert [item["id"] for item in listed["data"]] == [link["id"]] and listed["has_more"] is False
    assert listed["data"][0]["uses_completed"] == 2  # the list counts uses as the single read does
    other = await cashier.get(f"/v1/payment-links/{link['id']}", merchant_id="mch_someone_else")
    assert other.status_code == 404 and other.json()["code"] == "payment_link_not_found"


async def test_a_single_use_link_holds_its_use_while_a_session_is_open(
    start_cashier: Any, sandboxes: Sandboxes, clean_faults: None
) -> None:
    cashier = await _ready(start_cashier, sandboxes)
    link = (
        await cashier.post(
            "/v1/payment-links",
            {
                "currency": "CNY",
                "description": "Tuition 2026",
                "amount_minor": 88_800,
                "max_uses": 1,
                "payer_fields": ["student_id"],
            },
        )
    ).json()
    slug = _slug(link)
    fixed = await _open(cashier, slug, amount_minor=1, payer_fields={"student_id": "S2026-001"})
    assert fixed.json()["code"] == "payment_link_amount_invalid"  # a fixed amount cannot be changed
    first = await _open(cashier, slug, "req-single-01", payer_fields={"student_id": "S2026-001"})
    assert first.status_code == 201, first.text
    again = await _open(cashier, slug, "req-single-01", payer_fields={"student_id": "S2026-001"})
    assert again.json()["token"] == first.json()["token"]  # a double-submitted form: one session
    held = await _open(cashier, slug, payer_fields={"student_id": "S2026-002"})
    assert held.status_code == 409 and held.json()["code"] == "payment_link_used_up"
    page = (await cashier.client.get(f"/v1/checkout/pages/links/{slug}")).json()
    assert page["state"] == "used_up"

    view = (await cashier.client.get(f"/v1/checkout/pages/{first.json()['token']}")).json()
    assert view["status"] == "open" and view["amount_minor"] == 88_800
    assert (await cashier.get(f"/v1/payment-links/{link['id']}")).json()["uses_open"] == 1
    # The open session is abandoned (the merchant ends it here): its use comes back.
    async with cashier.engine.connect() as conn:
        found = await conn.execute(
            text("SELECT id FROM checkout_sessions WHERE payment_link_id = :l"), {"l": link["id"]}
        )
        abandoned = found.scalar_one()
    assert (await cashier.post(f"/v1/checkout/sessions/{abandoned}/expire")).json()["status"] == "expired"
    second = await _open(cashier, slug, payer_fields={"student_id": "S2026-002"})
    assert second.status_code == 201, second.text
    await _pay(cashier, sandboxes, second.json()["token"])
    done = (await cashier.get(f"/v1/payment-links/{link['id']}")).json()
    assert done["uses_completed"] == 1 and done["uses_open"] == 0
    assert (await _open(cashier, slug, payer_fields={"student_id": "S2026-003"})).json()["code"] == (
        "payment_link_used_up"
    )
