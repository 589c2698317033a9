"""A wallet top-up refunded through the cashier, with a real ledger and the Alipay sandbox (docs/marketing.md
"Top-up refunds"): the ledger holds the refund on the holder's cash balance before the channel is asked, so a
refund never takes money the holder spent (409 `refund_exceeds_balance`, nothing changed, also when two refunds
race for the last of it), and the ledger posts the hold when the refund succeeds (§3.7 reversed, not §3.3)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from libs.common.embedded import free_port
from libs.common.testing.infra import serve_app
from services.cashier.tests.integration.flows.conftest import Sandboxes, approve, qr_payment, wait_for
from services.cashier.tests.integration.flows.test_purpose_and_split import _post_as, _problem
from services.ledger.app import create_app as create_ledger_app
from services.ledger.tests.integration.wallet_harness import PERSON_IDS, resident_id
from services.ledger.verify import verify

HOLDER = "usr_topup_refund_1"


async def test_top_up_refund_takes_only_unspent_cash_and_the_ledger_posts_its_hold(
    start_cashier: Any, sandboxes: Sandboxes, migrated_database: Any, service_settings: Any, clean_faults: None
) -> None:
    ledger_port = free_port()
    cashier = await start_cashier(ledger_url=f"http://127.0.0.1:{ledger_port}")
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    ledger_db = await migrated_database("ledger")
    settings = service_settings("ledger", database_url=ledger_db, port=ledger_port,
                                wallet_topup_merchant_id=cashier.merchant_id)  # fmt: skip
    async with (
        serve_app(create_ledger_app(settings), port=ledger_port, name="the ledger") as ledger_url,
        httpx.AsyncClient(base_url=ledger_url, timeout=30) as ledger,
    ):
        holder = {"holder_id": HOLDER, "holder_type": "person", "name": "王五",
                  "resident_id": resident_id(next(PERSON_IDS)), "phone": "13900139001"}  # fmt: skip
        assert (await ledger.post("/v1/wallet/holders", json=holder)).status_code == 201
        body = qr_payment(amount_minor=10_000, purpose="wallet_topup", wallet_holder_id=HOLDER,
                          preferred_channels=["alipay"])  # fmt: skip
        created = await _post_as(cashier, body, service="ledger", merchant_id=cashier.merchant_id)
        assert created.status_code == 201, created.text
        await approve(sandboxes, "alipay", created.json()["attempts"][0]["out_trade_no"])
        payment = await cashier.wait_status(created.json()["id"], "succeeded")
        credited = await wait_for(lambda: _operation(ledger, "top_up", payment["id"]), "the top-up credited")
        assert credited["status"] == "posted"
        spend = {"payment_id": "pay_tr_spend", "merchant_id": "mch_shop", "amount_minor": 3_000}
        assert (await ledger.post(f"/v1/wallet/holders/{HOLDER}/payments", json=spend)).status_code == 201

        refunds = f"/v1/payments/{payment['id']}/refunds"
        over = _problem(await cashier.post(refunds, {"amount_minor": 8_000}), 409, "refund_exceeds_balance")
        assert over["available_minor"] == 7_000
        assert (await cashier.get(refunds)).json()["data"] == []  # nothing changed
        assert (await cashier.payment(payment["id"]))["refunded_minor"] == 0

        first = await cashier.post(refunds, {"amount_minor": 4_000})
        assert first.status_code == 201, first.text
        refund_id = first.json()["id"]
        # Two refunds race for the 3000 left of the cash: the ledger holds one, the other changes nothing.
        raced = await asyncio.gather(*(cashier.post(refunds, {"amount_minor": 3_000}) for _ in range(2)))
        assert sorted(r.status_code for r in raced) == [201, 409], [r.text for r in raced]
        _problem(next(r for r in raced if r.status_code == 409), 409, "refund_exceeds_balance")

        await wait_for(lambda: _posted(ledger, refund_id), "the first refund's hold posted by the ledger")
        for won in (r for r in raced if r.status_code == 201):
            await wait_for(lambda w=won: _posted(ledger, w.json()["id"]), "the second refund's hold posted")
        wallet = (await ledger.get(f"/v1/wallet/holders/{HOLDER}/my-wallet")).json()
        cash = next(v for v in wallet["subaccounts"] if v["subaccount_type"] == "balance")
        assert cash["balances"]["posted_balance_minor"] == 0
        listed = (await cashier.get(refunds)).json()["data"]
        assert sorted(r["amount_minor"] for r in listed) == [3_000, 4_000]
        assert (await cashier.payment(payment["id"]))["refunded_minor"] == 7_000
    assert await verify(ledger_db) == {}


async def _operation(ledger: httpx.AsyncClient, kind: str, key: str) -> dict[str, Any] | None:
    r = await ledger.get("/v1/wallet/operations", params={"kind": kind, "idempotency_key": key})
    return dict(r.json()) if r.status_code == 200 else None


async def _posted(ledger: httpx.AsyncClient, refund_id: str) -> bool:
    found = await _operation(ledger, "top_up_refund", refund_id)
    return found is not None and found["status"] == "posted"
