"""`page_size_max` bounds every cashier list (payments, a payment's refunds and webhook deliveries, a delivery's
attempt log). It used to be a setting nothing read: the payments list allowed 100 whatever it said and the
per-payment lists had no bound at all.

Not pages: `GET /v1/admin/merchants/{id}/channels` (one row per known connector, at most three) and the
internal daily bill (an NDJSON stream of one day).
"""

from __future__ import annotations

from typing import Any

from .conftest import RunningCashier, Sandboxes, paid_payment, qr_payment, wait_for

PAGE_SIZE_MAX = 2


async def _pages(cashier: RunningCashier, path: str) -> list[int]:
    """Sizes of the pages a client gets following next_cursor from the first page (no limit given)."""
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        response = await cashier.get(path, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        sizes.append(len(response.json()["data"]))
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return sizes


async def _refused(cashier: RunningCashier, path: str) -> None:
    response = await cashier.get(path, limit=PAGE_SIZE_MAX + 1)
    assert response.status_code == 422 and response.json()["code"] == "validation_failed", response.text
    assert response.json()["limit_max"] == PAGE_SIZE_MAX


async def test_every_list_is_bounded_by_page_size_max(start_cashier: Any, sandboxes: Sandboxes) -> None:
    cashier = await start_cashier(page_size_max=PAGE_SIZE_MAX)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)

    payment = await paid_payment(cashier, sandboxes, "alipay", 100)
    for _ in range(2):
        created = await cashier.post("/v1/payments", qr_payment())
        assert created.status_code == 201, created.text
    await _refused(cashier, "/v1/payments")
    assert await _pages(cashier, "/v1/payments") == [2, 1]

    for amount in (10, 20, 30):
        refund = await cashier.post(f"/v1/payments/{payment['id']}/refunds", {"amount_minor": amount})
        assert refund.status_code == 201, refund.text
    refunds_path = f"/v1/payments/{payment['id']}/refunds"
    await _refused(cashier, refunds_path)
    assert await _pages(cashier, refunds_path) == [2, 1]

    deliveries_path = f"/v1/payments/{payment['id']}/webhook-deliveries"

    async def four_deliveries() -> bool:  # payment.succeeded + three refund.succeeded
        return sum(await _pages(cashier, deliveries_path)) == 4

    await wait_for(four_deliveries, "a delivery per final event")
    await _refused(cashier, deliveries_path)
    assert await _pages(cashier, deliveries_path) == [2, 2]

    # A delivery's attempt log shows at most the latest page_size_max tries (resends make it grow).
    first = (await cashier.get(deliveries_path)).json()["data"][0]
    for _ in range(3):
        resent = await cashier.post(f"/v1/webhook-deliveries/{first['id']}/resend")
        assert resent.status_code == 202, resent.text

        async def delivered_again(delivery_id: str = first["id"]) -> bool:
            return (await cashier.get(f"/v1/webhook-deliveries/{delivery_id}")).json()["status"] == "delivered"

        await wait_for(delivered_again, "the resend")
    one = (await cashier.get(f"/v1/webhook-deliveries/{first['id']}")).json()
    assert len(one["attempts"]) == PAGE_SIZE_MAX
