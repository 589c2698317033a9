"""Transfers over HTTP with real PostgreSQL: posting, idempotency, bad input, two-phase, batches, reads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from .conftest import Ledger, body


async def funded(ledger: Ledger, amount_minor: int) -> tuple[str, str, str]:
    """(clearing, wallet with `amount_minor`, merchant)."""
    clearing = await ledger.open("channel_clearing", "1101", holder_id="platform")
    wallet = await ledger.wallet()
    merchant = await ledger.open("merchant_pending", "2201", holder_id="mch_1")
    r = await ledger.transfer(clearing, wallet, amount_minor)
    assert r.status_code == 201, r.text
    return clearing, wallet, merchant


async def test_posted_transfer_moves_balances_and_publishes(ledger: Ledger) -> None:
    clearing, wallet, _ = await funded(ledger, 500)
    assert await ledger.balances(wallet) == {
        "debits_posted": 0,
        "credits_posted": 500,
        "debits_pending": 0,
        "credits_pending": 0,
        "posted_balance_minor": 500,
        "available_balance_minor": 500,
    }
    assert (await ledger.balances(clearing))["posted_balance_minor"] == 500  # debit-normal asset
    assert ("transfer.posted", (await ledger.events())[-1][1]) == (await ledger.events())[-1]
    await ledger.assert_verified()
    metrics = (await ledger.client.get("/metrics")).text
    assert 'juhe_ledger_batches_total{path="locked"}' in metrics and "juhe_ledger_batch_transfers_bucket" in metrics


async def test_idempotency_same_body_replays_other_body_conflicts(ledger: Ledger) -> None:
    _, wallet, merchant = await funded(ledger, 500)
    first = await ledger.transfer(wallet, merchant, 100, key="pay_1:succeeded", reference="pay_1")
    again = await ledger.transfer(wallet, merchant, 100, key="pay_1:succeeded", reference="pay_1")
    other = await ledger.transfer(wallet, merchant, 101, key="pay_1:succeeded", reference="pay_1")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["replayed"] is True
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    assert other.headers["content-type"].startswith("application/problem+json")
    assert (await ledger.balances(wallet))["debits_posted"] == 100
    found = await ledger.client.get("/v1/transfers", params={"source": "test", "idempotency_key": "pay_1:succeeded"})
    assert found.status_code == 200 and found.json()["id"] == first.json()["id"]
    missing = await ledger.client.get("/v1/transfers", params={"source": "test", "idempotency_key": "nope"})
    assert missing.status_code == 404 and missing.json()["code"] == "transfer_not_found"


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda w, m, u: body("acc_nope", m, 10), 404, "account_not_found"),
        (lambda w, m, u: body(w, u, 10), 422, "currency_mismatch"),
        (lambda w, m, u: body(w, m, 0), 422, "amount_must_be_positive"),
        (lambda w, m, u: body(w, m, -5), 422, "amount_must_be_positive"),
        (lambda w, m, u: body(w, m, 2**63), 422, "amount_exceeds_maximum"),
        (lambda w, m, u: body(w, m, 10**30), 422, "amount_exceeds_maximum"),
        (lambda w, m, u: body(w, m, 10) | {"postings": body(w, m, 10)["postings"][:1]}, 422, "too_few_postings"),
        (
            lambda w, m, u: (
                body(w, m, 10) | {"postings": [body(w, m, 10)["postings"][0], body(w, m, 9)["postings"][1]]}
            ),
            422,
            "transfer_unbalanced",
        ),
        (lambda w, m, u: body(w, m, 10, currency="XXX"), 422, "currency_mismatch"),
        (lambda w, m, u: body(w, m, 10, currency="cny"), 422, "validation_failed"),
        (lambda w, m, u: body(w, m, 10, timeout_seconds=5), 422, "invalid_timeout"),
        (lambda w, m, u: body(w, m, 10) | {"postings": "nope"}, 422, "validation_failed"),
        (lambda w, m, u: body(w, m, 1000), 409, "insufficient_funds"),
        (lambda w, m, u: body(w, m, 10, corrects_transfer_id="tr_nope"), 422, "corrected_transfer_not_found"),
    ],
)
async def test_bad_input_gives_problem_and_writes_nothing(ledger: Ledger, make, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    _, wallet, merchant = await funded(ledger, 500)
    usd = await ledger.open(currency="USD")
    before = (await ledger.count("transfers"), await ledger.count("entries"), await ledger.count("outbox"))
    r = await ledger.client.post("/v1/transfers", json=make(wallet, merchant, usd))
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code and r.json()["status"] == status
    assert (await ledger.count("transfers"), await ledger.count("entries"), await ledger.count("outbox")) == before


async def test_frozen_and_closed_accounts(ledger: Ledger) -> None:
    clearing, wallet, merchant = await funded(ledger, 500)
    assert (await ledger.client.post(f"/v1/accounts/{wallet}/freeze")).json()["status"] == "frozen"
    r = await ledger.transfer(wallet, merchant, 10)
    assert r.status_code == 409 and r.json()["code"] == "account_frozen"
    assert (await ledger.transfer(clearing, wallet, 10)).status_code == 201  # credits still welcome
    await ledger.client.post(f"/v1/accounts/{wallet}/unfreeze")
    assert (await ledger.transfer(wallet, merchant, 10)).status_code == 201
    empty = await ledger.open()
    assert (await ledger.client.post(f"/v1/accounts/{empty}/close")).json()["status"] == "closed"
    r = await ledger.transfer(clearing, empty, 10)
    assert r.status_code == 409 and r.json()["code"] == "account_closed"
    r = await ledger.client.post(f"/v1/accounts/{wallet}/close")
    assert r.status_code == 409 and r.json()["code"] == "account_not_empty"
    types = [t for t, _ in await ledger.events()]
    assert {"account.frozen", "account.unfrozen", "account.closed"} <= set(types)


async def test_pending_post_partial_void_and_events(ledger: Ledger) -> None:
    _, wallet, merchant = await funded(ledger, 500)
    hold = (await ledger.transfer(wallet, merchant, 300, pending=True)).json()
    assert hold["status"] == "pending"
    b = await ledger.balances(wallet)
    assert (b["debits_pending"], b["available_balance_minor"], b["posted_balance_minor"]) == (300, 200, 500)
    r = await ledger.transfer(wallet, merchant, 201)
    assert r.json()["code"] == "insufficient_funds"
    r = await ledger.client.post(f"/v1/transfers/{hold['id']}/post", json={"amount_minor": 250})
    assert r.status_code == 200 and r.json()["status"] == "posted", r.text
    assert [p["posted_amount_minor"] for p in r.json()["postings"]] == [250, 250]
    assert (await ledger.balances(wallet))["available_balance_minor"] == 250
    r = await ledger.client.post(f"/v1/transfers/{hold['id']}/void")
    assert r.status_code == 409 and r.json()["code"] == "pending_transfer_already_posted"

    hold2 = (await ledger.transfer(wallet, merchant, 100, pending=True)).json()
    r = await ledger.client.post(f"/v1/transfers/{hold2['id']}/void")
    assert r.status_code == 200 and r.json()["status"] == "voided"
    r = await ledger.client.post(f"/v1/transfers/{hold2['id']}/post", json={"amount_minor": 1})
    assert r.json()["code"] == "pending_transfer_already_voided"
    r = await ledger.client.post("/v1/transfers/tr_nope/post")
    assert r.status_code == 404 and r.json()["code"] == "transfer_not_found"
    assert (await ledger.balances(wallet))["available_balance_minor"] == 250
    types = [t for t, _ in await ledger.events()]
    assert types.count("transfer.pending") == 2 and "transfer.voided" in types
    await ledger.assert_verified()


async def test_pending_expires_by_itself(ledger: Ledger) -> None:
    _, wallet, merchant = await funded(ledger, 500)
    hold = (await ledger.transfer(wallet, merchant, 500, pending=True, timeout_seconds=1)).json()
    for _ in range(100):
        r = await ledger.client.get(f"/v1/transfers/{hold['id']}")
        if r.json()["status"] != "pending":
            break
        await asyncio.sleep(0.1)
    assert r.json()["status"] == "expired"
    assert (await ledger.balances(wallet))["available_balance_minor"] == 500
    r = await ledger.client.post(f"/v1/transfers/{hold['id']}/post")
    assert r.json()["code"] == "pending_transfer_expired"
    assert "transfer.expired" in [t for t, _ in await ledger.events()]
    await ledger.assert_verified()


async def test_batch_independent_and_linked(ledger: Ledger) -> None:
    _, wallet, merchant = await funded(ledger, 100)
    r = await ledger.client.post(
        "/v1/transfers/batch", json={"transfers": [body(wallet, merchant, 60), body(wallet, merchant, 60)]}
    )
    assert r.status_code == 200, r.text
    assert [x["outcome"] for x in r.json()["results"]] == ["created", "failed"]
    assert r.json()["results"][1]["error"]["code"] == "insufficient_funds"

    before = await ledger.count("entries")
    r = await ledger.client.post(
        "/v1/transfers/batch",
        json={"linked": True, "transfers": [body(wallet, merchant, 30), body(wallet, merchant, 30)]},
    )
    assert r.status_code == 409 and r.json()["code"] == "insufficient_funds", r.text
    assert [x["error"]["code"] for x in r.json()["results"]] == ["linked_event_failed", "insufficient_funds"]
    assert await ledger.count("entries") == before
    r = await ledger.client.post(
        "/v1/transfers/batch",
        json={"linked": True, "transfers": [body(wallet, merchant, 20), body(wallet, merchant, 20)]},
    )
    assert r.status_code == 200 and r.json()["created"] == 2
    assert (await ledger.balances(wallet))["posted_balance_minor"] == 0
    r = await ledger.client.post("/v1/transfers/batch", json={"transfers": []})
    assert r.json()["code"] == "batch_empty"
    r = await ledger.client.post("/v1/transfers/batch", json={"transfers": [body(wallet, merchant, 1)] * 1001})
    assert r.status_code == 422 and r.json()["code"] == "batch_too_large"
    await ledger.assert_verified()


async def test_correction_references_original(ledger: Ledger) -> None:
    _, wallet, merchant = await funded(ledger, 100)
    original = (await ledger.transfer(wallet, merchant, 40)).json()
    fix = await ledger.transfer(merchant, wallet, 40, corrects_transfer_id=original["id"])
    assert fix.status_code == 201 and fix.json()["corrects_transfer_id"] == original["id"]
    assert (await ledger.client.get(f"/v1/transfers/{original['id']}")).json()["status"] == "posted"
    assert (await ledger.balances(wallet))["posted_balance_minor"] == 100


async def test_balance_as_of_and_statement_pages(ledger: Ledger) -> None:
    _, wallet, merchant = await funded(ledger, 100)
    mid = datetime.now(UTC)
    await asyncio.sleep(0.01)
    for _ in range(4):
        assert (await ledger.transfer(wallet, merchant, 10)).status_code == 201
    r = await ledger.client.get(f"/v1/accounts/{wallet}/balance", params={"as_of": mid.isoformat()})
    assert r.json()["balances"]["posted_balance_minor"] == 100
    r = await ledger.client.get(f"/v1/accounts/{wallet}/balance", params={"as_of": "2000-01-01T00:00:00Z"})
    assert r.json()["balances"]["posted_balance_minor"] == 0
    assert (await ledger.client.get(f"/v1/accounts/{wallet}/balance")).json()["balances"]["posted_balance_minor"] == 60

    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await ledger.client.get(f"/v1/accounts/{wallet}/statement", params=params)).json()
        seen += page["data"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [e["balances_after"]["posted_balance_minor"] for e in seen] == [100, 90, 80, 70, 60]
    later = (await ledger.client.get(f"/v1/accounts/{wallet}/statement", params={"since": mid.isoformat()})).json()
    assert len(later["data"]) == 4
    r = await ledger.client.get("/v1/accounts/acc_nope/statement")
    assert r.status_code == 404 and r.json()["code"] == "account_not_found"
