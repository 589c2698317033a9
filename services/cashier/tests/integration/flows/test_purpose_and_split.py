"""The split check and purpose (docs/contracts.md §1): `purpose` (wallet top-ups only from the ledger or the
platform, never refunded), an explicit `split` checked by settlement before anything is created, and
`profit_sharing` — stored, shown in the payment view and carried by every payment.* event and the merchant
webhook."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from libs.common.embedded import free_port
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.outbox_tables import outbox
from libs.common.testing.infra import serve_app
from services.cashier.store.tables import attempts, payments
from services.settlement.app import create_app as create_settlement_app

from .conftest import RunningCashier, Sandboxes, WebhookReceiver, approve, qr_payment, wait_for

HOLDER = "usr_topup_1"
PURPOSE_FIELDS = ("purpose", "wallet_holder_id", "split", "profit_sharing")


def _token(
    cashier: RunningCashier,
    *,
    merchant_id: str | None = None,
    platform: str | None = None,
    user: str | None = None,
    service: str | None = None,
) -> dict[str, str]:
    secret = cashier.cashier.settings.internal_token_secret.get_secret_value()
    token = mint_identity_token(
        secret, key_id="test", merchant_id=merchant_id, platform=platform, user=user, service=service
    )
    return {IDENTITY_HEADER: token}


async def _post_as(
    cashier: RunningCashier,
    body: dict[str, Any],
    *,
    merchant_id: str | None = None,
    platform: str | None = None,
    user: str | None = None,
    service: str | None = None,
) -> httpx.Response:
    headers = _token(cashier, merchant_id=merchant_id, platform=platform, user=user, service=service)
    return await cashier.client.post("/v1/payments", json=body, headers=headers)


async def _counts(cashier: RunningCashier) -> tuple[int, int]:
    async with cashier.engine.connect() as conn:
        n_payments = (await conn.execute(select(func.count()).select_from(payments))).scalar_one()
        n_attempts = (await conn.execute(select(func.count()).select_from(attempts))).scalar_one()
    return int(n_payments), int(n_attempts)


async def _event_data(cashier: RunningCashier, payment_id: str) -> dict[str, dict[str, Any]]:
    """The data of every event published about one payment, by event type."""
    query = select(outbox.c.event_type, outbox.c.payload).where(outbox.c.key == payment_id)
    async with cashier.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {row.event_type: json.loads(row.payload)["data"] for row in rows}


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def _topup(**overrides: Any) -> dict[str, Any]:
    return qr_payment(**{"purpose": "wallet_topup", "wallet_holder_id": HOLDER, **overrides})


async def test_wallet_topup_only_from_ledger_or_platform_and_never_refunded(
    start_cashier: Any, sandboxes: Sandboxes, webhook_receiver: WebhookReceiver
) -> None:
    cashier = await start_cashier(platform_fee_rate_bps=60)
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    m = cashier.merchant_id

    # A merchant (dev header or token) or another service cannot mint wallet balance: nothing is created.
    _problem(await cashier.post("/v1/payments", _topup()), 403, "purpose_not_allowed")
    _problem(await _post_as(cashier, _topup(), merchant_id=m), 403, "purpose_not_allowed")
    _problem(await _post_as(cashier, _topup(), service="routing", merchant_id=m), 403, "purpose_not_allowed")
    _problem(await _post_as(cashier, _topup(), user="usr_1", merchant_id=m), 403, "purpose_not_allowed")
    assert await _counts(cashier) == (0, 0)

    by_ledger = await _post_as(cashier, _topup(), service="ledger", merchant_id=m)
    assert by_ledger.status_code == 201, by_ledger.text
    payment = by_ledger.json()
    assert {k: payment[k] for k in PURPOSE_FIELDS} == {
        "purpose": "wallet_topup",
        "wallet_holder_id": HOLDER,
        "split": None,
        "profit_sharing": False,
    }
    by_platform = await _post_as(cashier, _topup(), platform="plt_1", merchant_id=m)
    assert by_platform.status_code == 201, by_platform.text
    assert by_platform.json()["purpose"] == "wallet_topup"

    # Same order number and body again from the ledger: the same payment (idempotent create).
    again = await _post_as(
        cashier, _topup(merchant_order_no=payment["merchant_order_no"]), service="ledger", merchant_id=m
    )
    assert again.status_code == 200 and again.json()["id"] == payment["id"]

    await approve(sandboxes, "wechatpay", payment["attempts"][0]["out_trade_no"])
    await cashier.wait_status(payment["id"], "succeeded")
    events = await wait_for(lambda: _events_with(cashier, payment["id"], "payment.succeeded"), "payment.succeeded")
    for event_type in ("payment.created", "payment.succeeded"):
        data = events[event_type]
        assert data["purpose"] == "wallet_topup" and data["wallet_holder_id"] == HOLDER, event_type
        assert data["split"] is None and data["profit_sharing"] is False, event_type
        assert data["platform_fee_minor"] == 0, event_type  # the platform does not charge itself (ledger §3.7)
    ordinary = await cashier.post("/v1/payments", qr_payment(amount_minor=10_000))
    assert ordinary.status_code == 201, ordinary.text
    assert (await _event_data(cashier, ordinary.json()["id"]))["payment.created"]["platform_fee_minor"] == 60
    hooks = await wait_for(
        lambda: [
            json.loads(r.body)
            for r in webhook_receiver.delivered()
            if json.loads(r.body)["data"]["id"] == payment["id"]
        ],
        "the webhook",
    )
    assert hooks[0]["data"]["purpose"] == "wallet_topup" and hooks[0]["data"]["wallet_holder_id"] == HOLDER

    refused = await cashier.post(f"/v1/payments/{payment['id']}/refunds", {"amount_minor": 1})
    _problem(refused, 409, "refund_not_allowed")
    listed = await cashier.get(f"/v1/payments/{payment['id']}/refunds")
    assert listed.json()["data"] == []
    assert (await cashier.payment(payment["id"]))["refunded_minor"] == 0


async def _events_with(cashier: RunningCashier, payment_id: str, event_type: str) -> dict[str, Any] | None:
    events = await _event_data(cashier, payment_id)
    return events if event_type in events else None


async def test_incoherent_purpose_or_split_is_refused_and_creates_nothing(
    start_cashier: Any, sandboxes: Sandboxes
) -> None:
    cashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    m = cashier.merchant_id
    ledger = {"service": "ledger", "merchant_id": m}

    _problem(await _post_as(cashier, qr_payment(purpose="wallet_topup"), **ledger), 422, "validation_failed")
    _problem(await _post_as(cashier, _topup(wallet_holder_id=""), **ledger), 422, "validation_failed")
    _problem(await _post_as(cashier, _topup(wallet_holder_id="u" * 65), **ledger), 422, "validation_failed")
    _problem(
        await _post_as(cashier, _topup(scene="wallet", payer={"user_id": HOLDER}), **ledger), 422, "validation_failed"
    )
    _problem(
        await _post_as(cashier, _topup(split=[{"receiver_id": "rcv_1", "amount_minor": 1}]), **ledger),
        422,
        "validation_failed",
    )
    _problem(await _post_as(cashier, _topup(purpose="gift"), **ledger), 422, "validation_failed")
    _problem(await cashier.post("/v1/payments", qr_payment(wallet_holder_id=HOLDER)), 422, "validation_failed")

    def split(*lines: tuple[str, Any]) -> dict[str, Any]:
        return qr_payment(amount_minor=100, split=[{"receiver_id": r, "amount_minor": a} for r, a in lines])

    for bad in (
        split(("rcv_1", 60), ("rcv_1", 10)),  # the same receiver twice
        split(("rcv_1", 60), ("rcv_2", 41)),  # more than the payment
        split(("rcv_1", 0)),
        split(("rcv_1", -1)),
        split(("rcv_1", 1.5)),
        split(("", 1)),
        split(*[(f"rcv_{i}", 1) for i in range(21)]),
        qr_payment(split=[]),
        qr_payment(split=[{"receiver_id": "rcv_1", "amount_minor": 1, "extra": 1}]),
        qr_payment(profit_sharing="maybe"),
    ):
        _problem(await cashier.post("/v1/payments", bad), 422, "validation_failed")
    assert await _counts(cashier) == (0, 0)


async def test_split_is_never_created_unchecked(start_cashier: Any, sandboxes: Sandboxes) -> None:
    """No settlement configured, or settlement unreachable → 503 settlement_unavailable, nothing created."""
    body = qr_payment(amount_minor=100, split=[{"receiver_id": "rcv_1", "amount_minor": 30}])
    unconfigured = await start_cashier()
    await unconfigured.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    refused = _problem(await unconfigured.post("/v1/payments", body), 503, "settlement_unavailable")
    assert refused["retryable"] is True
    assert await _counts(unconfigured) == (0, 0)

    dead = await start_cashier(settlement_url=f"http://127.0.0.1:{free_port()}", settlement_timeout_seconds=1.0)
    await dead.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    _problem(await dead.post("/v1/payments", body), 503, "settlement_unavailable")
    assert await _counts(dead) == (0, 0)
    # Without a split the same cashier creates payments as before: settlement is only asked about splits.
    plain = await dead.post(
        "/v1/payments", qr_payment(amount_minor=100, payer={"user_id": "usr_42"}, metadata={"business_line": "parking"})
    )
    assert plain.status_code == 201, plain.text
    assert plain.json()["split"] is None
    # Consumers read these from the event: settlement the rule's business line, marketing the payer's points.
    created = (await _event_data(dead, plain.json()["id"]))["payment.created"]
    assert created["metadata"] == {"business_line": "parking"} and created["payer_user_id"] == "usr_42"


async def test_profit_sharing_is_stored_and_needs_a_channel_that_can_freeze(
    start_cashier: Any, sandboxes: Sandboxes
) -> None:
    cashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    created = await cashier.post("/v1/payments", qr_payment(profit_sharing=True))
    assert created.status_code == 201, created.text
    assert created.json()["profit_sharing"] is True and created.json()["purpose"] == "payment"
    events = await _event_data(cashier, created.json()["id"])
    assert events["payment.created"]["profit_sharing"] is True
    assert events["payment.created"]["wallet_holder_id"] is None

    wallet_only = await start_cashier()
    await wallet_only.configure("wallet", {}, priority=1)
    _problem(
        await wallet_only.post(
            "/v1/payments", qr_payment(scene="wallet", payer={"user_id": "usr_1"}, profit_sharing=True)
        ),
        422,
        "profit_sharing_unsupported",
    )
    assert await _counts(wallet_only) == (0, 0)


async def _serve_settlement(service_settings: Any, database_url: str) -> AsyncIterator[str]:
    port = free_port()
    settings = service_settings(
        "settlement", database_url=database_url, port=port, ledger_url="http://127.0.0.1:9", role="api"
    )
    async with serve_app(create_settlement_app(settings), port=port, name="settlement") as base_url:
        yield base_url


@pytest.fixture
async def settlement_url(migrated_database: Any, service_settings: Any, platform_topics: str) -> AsyncIterator[str]:
    """The real settlement service (API role) on a free port: it owns split rules and answers split checks."""
    async for url in _serve_settlement(service_settings, await migrated_database("settlement")):
        yield url


@pytest.fixture
async def broken_settlement_url(
    migrated_database: Any, service_settings: Any, platform_topics: str
) -> AsyncIterator[str]:
    """The real settlement on a database without its tables (a failed migration): it answers 500."""
    async for url in _serve_settlement(service_settings, await migrated_database("cashier")):
        yield url


async def _split_rule(settlement_url: str, merchant_id: str) -> None:
    """Receivers and a rule: a partner may take up to 30 % of what the merchant keeps (no platform fee here)."""
    async with httpx.AsyncClient(base_url=settlement_url) as client:
        for receiver_id, kind, holder in (
            ("r_shop", "merchant", merchant_id),
            ("r_tch", "partner", "tch_1"),
            ("r_other", "partner", "x_1"),
        ):
            put = await client.put(f"/v1/settlement/receivers/{receiver_id}", json={"kind": kind, "holder_id": holder})
            assert put.is_success, put.text
        rule = {"shares": [{"receiver_id": "r_tch", "percent_bps": 3000}], "remainder_receiver_id": "r_shop"}
        put = await client.put(f"/v1/settlement/merchants/{merchant_id}/split-rule", json=rule)
        assert put.is_success, put.text


async def test_split_checked_by_the_real_settlement(
    start_cashier: Any, sandboxes: Sandboxes, settlement_url: str
) -> None:
    cashier = await start_cashier(settlement_url=settlement_url)
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    await _split_rule(settlement_url, cashier.merchant_id)

    def split(*lines: tuple[str, int]) -> dict[str, Any]:
        return qr_payment(amount_minor=1000, split=[{"receiver_id": r, "amount_minor": a} for r, a in lines])

    # Settlement's refusals reach the merchant with settlement's status and code; nothing is created.
    for body, status, code in (
        (split(("r_tch", 301)), 422, "share_exceeds_rule"),
        (split(("r_other", 1)), 422, "unknown_receiver"),
        (split(("r_nobody", 1)), 422, "unknown_receiver"),
    ):
        _problem(await cashier.post("/v1/payments", body), status, code)
    assert await _counts(cashier) == (0, 0)
    other = await start_cashier(settlement_url=settlement_url)  # a merchant without a split rule
    await other.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    _problem(await other.post("/v1/payments", split(("r_tch", 1))), 404, "split_rule_not_found")
    assert await _counts(other) == (0, 0)
    # Checked against the rule settlement will apply at success: the one of `metadata.business_line`.
    other_line = {**split(("r_tch", 300)), "metadata": {"business_line": "tuition"}}
    _problem(await cashier.post("/v1/payments", other_line), 404, "split_rule_not_found")
    assert await _counts(cashier) == (0, 0)

    accepted = await cashier.post("/v1/payments", split(("r_tch", 300), ("r_shop", 700)))
    assert accepted.status_code == 201, accepted.text
    lines = [{"receiver_id": "r_tch", "amount_minor": 300}, {"receiver_id": "r_shop", "amount_minor": 700}]
    assert accepted.json()["split"] == lines
    assert (await cashier.payment(accepted.json()["id"]))["split"] == lines
    events = await _event_data(cashier, accepted.json()["id"])
    assert events["payment.created"]["split"] == lines and events["payment.created"]["purpose"] == "payment"
    # The metadata travels with the event: settlement picks the split rule by its business_line at success.
    assert events["payment.created"]["metadata"] == accepted.json()["metadata"]
    # The same order again returns the same payment; another split under the same order number is refused.
    again = await cashier.post(
        "/v1/payments",
        {**split(("r_tch", 300), ("r_shop", 700)), "merchant_order_no": accepted.json()["merchant_order_no"]},
    )
    assert again.status_code == 200 and again.json()["id"] == accepted.json()["id"]
    changed = await cashier.post(
        "/v1/payments", {**split(("r_tch", 200)), "merchant_order_no": accepted.json()["merchant_order_no"]}
    )
    _problem(changed, 409, "duplicate_merchant_order")


async def test_settlement_failing_is_unavailable_not_a_refusal(
    start_cashier: Any, sandboxes: Sandboxes, broken_settlement_url: str
) -> None:
    cashier = await start_cashier(settlement_url=broken_settlement_url)
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    async with httpx.AsyncClient(base_url=broken_settlement_url) as client:  # settlement itself is failing
        direct = await client.post(
            "/v1/internal/split-checks",
            json={
                "merchant_id": cashier.merchant_id,
                "amount_minor": 100,
                "currency": "CNY",
                "split": [{"receiver_id": "rcv_1", "amount_minor": 30}],
            },
        )
        assert direct.status_code >= 500, direct.text
    body = qr_payment(amount_minor=100, split=[{"receiver_id": "rcv_1", "amount_minor": 30}])
    _problem(await cashier.post("/v1/payments", body), 503, "settlement_unavailable")
    assert await _counts(cashier) == (0, 0)
