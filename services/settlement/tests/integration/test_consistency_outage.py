"""The settlement ↔ ledger check when the ledger cannot be read: 503 ledger_unavailable (retryable),
nothing stored — never a result that claims `ok` without the ledger's side."""

from __future__ import annotations

from services.settlement.tests.integration.conftest import Harness, payment_event


async def test_a_check_without_the_ledger_is_503_and_stores_nothing(settlement_only: Harness) -> None:
    h = settlement_only
    empty = (await h.client.get("/v1/settlement/consistency")).json()
    assert empty == {"ok": None, "checked_at": None, "holders_checked": 0, "mismatches": [], "unconfirmed": []}
    await h.deliver(payment_event("pay_o1", amount_minor=10_000, fee_minor=25))  # a holder to compare
    r = await h.client.post("/v1/settlement/consistency/runs")
    assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "ledger_unavailable" and r.json()["retryable"] is True
    assert (await h.client.get("/v1/settlement/consistency")).json() == empty
