"""BNPL repayments are exact under concurrency: 20 at once never repay more than the bill (the engine decides
on the bill's memo account under the locks, not a sum read before)."""

from __future__ import annotations

import asyncio

from services.ledger.tests.integration.wallet_harness import Wallet, problem


async def test_20_concurrent_repayments_never_over_repay_a_bill(wallet: Wallet) -> None:
    holder_id = await wallet.verified_person()
    assert (await wallet.top_up(holder_id, 50_000)).status_code == 201
    c = wallet.client
    assert (await c.put(f"/v1/wallet/holders/{holder_id}/credit-line", json={"limit_minor": 10_000})).status_code == 200
    r = await c.post(
        f"/v1/wallet/holders/{holder_id}/payments",
        json={"payment_id": "pay_bnpl_c", "merchant_id": "m", "amount_minor": 4_000, "subaccount_type": "credit"},
    )
    assert r.status_code == 201, r.text
    bill = (await c.post(f"/v1/wallet/holders/{holder_id}/bills", json={"period": "202611"})).json()
    assert bill["amount_due_minor"] == 4_000

    async def repay(i: int) -> int:
        body = {"repayment_id": f"rp_c_{i}", "amount_minor": 300}
        r = await c.post(f"/v1/wallet/bills/{bill['id']}/repayments", json=body)
        if r.status_code != 201:
            problem(r, 422, "repayment_too_large")
        return r.status_code

    results = await asyncio.gather(*(repay(i) for i in range(20)))
    assert results.count(201) == 13  # 13 × 300 = 3,900; a 14th would be 4,200
    after = (await c.get(f"/v1/wallet/bills/{bill['id']}")).json()
    assert (after["repaid_minor"], after["status"]) == (3_900, "open")
    # the rest, concurrently with one more than the rest: exactly one of the two fits
    both = await asyncio.gather(
        c.post(f"/v1/wallet/bills/{bill['id']}/repayments", json={"repayment_id": "rp_last", "amount_minor": 100}),
        c.post(f"/v1/wallet/bills/{bill['id']}/repayments", json={"repayment_id": "rp_more", "amount_minor": 101}),
    )
    assert sorted(r.status_code for r in both) == [201, 422]
    if both[0].status_code != 201:  # 101 went first: 100 no longer fits either, 1 fen short of paid
        assert (
            await c.post(
                f"/v1/wallet/bills/{bill['id']}/repayments", json={"repayment_id": "rp_tail", "amount_minor": 1}
            )
        ).status_code == 201
    final = (await c.get(f"/v1/wallet/bills/{bill['id']}")).json()
    assert (final["repaid_minor"], final["status"]) == (4_000, "paid")
    view = await wallet.my_wallet(holder_id)
    assert view["credit"]["owed_minor"] == 0 and view["credit"]["available_minor"] == 10_000
    balance = next(s for s in view["subaccounts"] if s["subaccount_type"] == "balance")
    assert balance["balances"]["posted_balance_minor"] == 50_000 - 4_000
