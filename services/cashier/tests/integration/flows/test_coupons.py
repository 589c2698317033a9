"""A coupon on `POST /v1/payments` is never applied unchecked: without marketing (not configured, unreachable)
the payment is refused 503 `marketing_unavailable` (retryable) and nothing is created; a coupon without a
named payer, on a wallet payment or a top-up is 422 `coupon_not_allowed`. Marketing's own refusals, the race
for one coupon and the money are proved end to end in tests/e2e/test_marketing_coupons.py."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from libs.common.embedded import free_port
from services.cashier.store.tables import attempts, payments

from .conftest import RunningCashier, Sandboxes, qr_payment


async def _nothing_created(cashier: RunningCashier) -> bool:
    async with cashier.engine.connect() as conn:
        counts = [(await conn.execute(select(func.count()).select_from(t))).scalar_one() for t in (payments, attempts)]
    return counts == [0, 0]


def _code(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return str(response.json()["code"])


async def test_a_coupon_without_marketing_is_refused_and_nothing_is_created(
    start_cashier: Any, sandboxes: Sandboxes
) -> None:
    body = qr_payment(amount_minor=12_000, coupon_id="cpn_1", payer={"user_id": "usr_1"})
    unconfigured = await start_cashier()
    await unconfigured.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    refused = await unconfigured.post("/v1/payments", body)
    assert _code(refused, 503) == "marketing_unavailable" and refused.json()["retryable"] is True
    for bad in (
        qr_payment(coupon_id="cpn_1"),  # no named payer
        qr_payment(coupon_id="cpn_1", scene="wallet", payer={"user_id": "usr_1"}),
    ):
        assert _code(await unconfigured.post("/v1/payments", bad), 422) == "coupon_not_allowed"
    for malformed in (
        qr_payment(coupon_id="cpn 1"),
        qr_payment(coupon_code="123"),  # shorter than any code
        qr_payment(coupon_code="1234 5678"),
        qr_payment(coupon_id="cpn_1", coupon_code="1234567890123456", payer={"user_id": "usr_1"}),
    ):
        assert _code(await unconfigured.post("/v1/payments", malformed), 422) == "validation_failed"
    assert await _nothing_created(unconfigured)

    dead = await start_cashier(marketing_url=f"http://127.0.0.1:{free_port()}", marketing_timeout_seconds=1.0)
    await dead.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    assert _code(await dead.post("/v1/payments", body), 503) == "marketing_unavailable"
    assert await _nothing_created(dead)
    # Without a coupon nothing asks marketing: the same cashier takes an ordinary payment.
    plain = await dead.post("/v1/payments", qr_payment(amount_minor=12_000))
    assert plain.status_code == 201, plain.text
    assert (plain.json()["amount_minor"], plain.json()["payable_minor"], plain.json()["discount"]) == (
        12_000,
        12_000,
        None,
    )
