"""Accounts over HTTP: open (flags, limits, idempotency), read, list by holder, status changes, events."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Ledger


async def test_open_with_flags_and_read(ledger: Ledger) -> None:
    r = await ledger.client.post(
        "/v1/accounts",
        json={
            "holder_id": "usr_1",
            "currency": "CNY",
            "kind": "user_wallet",
            "code": "2301",
            "flags": {"debits_must_not_exceed_credits": True},
            "credit_limit_minor": 5000,
            "metadata": {"tier": "gold"},
        },
    )
    assert r.status_code == 201, r.text
    account = r.json()
    assert account["id"].startswith("acc_") and account["status"] == "active"
    assert account["normal_balance"] == "credit" and account["credit_limit_minor"] == 5000
    assert account["flags"] == {"debits_must_not_exceed_credits": True, "credits_must_not_exceed_debits": False}
    assert account["balances"]["available_balance_minor"] == 0
    assert (await ledger.client.get(f"/v1/accounts/{account['id']}")).json() == account
    clearing = (
        await ledger.client.post(
            "/v1/accounts",
            json={"holder_id": "platform", "currency": "CNY", "kind": "channel_clearing", "code": "1101"},
        )
    ).json()
    assert clearing["normal_balance"] == "debit"  # 1xxx: an asset
    assert ("account.opened", account["id"]) in await ledger.events()


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (
            {"flags": {"debits_must_not_exceed_credits": True, "credits_must_not_exceed_debits": True}},
            "validation_failed",
        ),
        ({"credit_limit_minor": 10}, "validation_failed"),  # a limit needs a flag
        ({"credit_limit_minor": -1}, "validation_failed"),
        ({"currency": "XXX"}, "validation_failed"),
        ({"normal_balance": "sideways"}, "validation_failed"),
    ],
)
async def test_open_refuses_bad_accounts(ledger: Ledger, extra: dict[str, Any], code: str) -> None:
    body = {"holder_id": "usr_1", "currency": "CNY", "kind": "user_wallet", "code": "2301"} | extra
    r = await ledger.client.post("/v1/accounts", json=body)
    assert r.status_code == 422 and r.json()["code"] == code, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await ledger.count("accounts") == 0


async def test_open_is_idempotent_by_key(ledger: Ledger) -> None:
    body = {
        "holder_id": "mch_9",
        "currency": "CNY",
        "kind": "merchant_pending",
        "code": "2201",
        "idempotency_key": "k1",
    }
    first = await ledger.client.post("/v1/accounts", json=body)
    again = await ledger.client.post("/v1/accounts", json=body)
    other = await ledger.client.post("/v1/accounts", json=body | {"metadata": {"other": True}})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    assert await ledger.count("accounts") == 1
    assert [t for t, _ in await ledger.events()].count("account.opened") == 1


async def test_chart_accounts_open_by_kind(ledger: Ledger) -> None:
    """Other services name a chart account by its kind (docs/ledger.md §2): the code comes from the chart, the
    kind alone binds the key as kind and code together did, and a code the chart disagrees with, or a kind
    outside the chart without a code, is refused with nothing written."""
    body = {"holder_id": "mch_9", "currency": "CNY", "kind": "merchant_pending", "idempotency_key": "chart:k"}
    first = await ledger.client.post("/v1/accounts", json=body)
    assert first.status_code == 201, first.text
    assert first.json()["code"] == "2201" and first.json()["normal_balance"] == "credit"
    with_code = await ledger.client.post("/v1/accounts", json=body | {"code": "2201"})
    assert with_code.status_code == 200 and with_code.json()["id"] == first.json()["id"]
    for extra, code in (({"code": "2202"}, "chart_code_mismatch"), ({"kind": "custom"}, "account_code_required")):
        r = await ledger.client.post("/v1/accounts", json=body | extra | {"idempotency_key": f"k:{code}"})
        assert r.status_code == 422 and r.json()["code"] == code, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    assert await ledger.count("accounts") == 1
    assert [t for t, _ in await ledger.events()].count("account.opened") == 1


async def test_list_by_holder_with_cursor(ledger: Ledger) -> None:
    mine = [await ledger.open(holder_id="mch_7", kind=f"k{i}") for i in range(5)]
    await ledger.open(holder_id="mch_8")
    seen, cursor = [], None
    while True:
        params: dict[str, str | int] = {"holder_id": "mch_7", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await ledger.client.get("/v1/accounts", params=params)).json()
        seen += [a["id"] for a in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(mine)


async def test_status_changes_are_named_and_idempotent(ledger: Ledger) -> None:
    account = await ledger.open()
    assert (await ledger.client.post(f"/v1/accounts/{account}/freeze")).json()["status"] == "frozen"
    assert (await ledger.client.post(f"/v1/accounts/{account}/freeze")).json()["status"] == "frozen"
    assert (await ledger.client.post(f"/v1/accounts/{account}/unfreeze")).json()["status"] == "active"
    assert (await ledger.client.post(f"/v1/accounts/{account}/close")).json()["status"] == "closed"
    r = await ledger.client.post(f"/v1/accounts/{account}/freeze")
    assert r.status_code == 409 and r.json()["code"] == "account_closed"
    types = [t for t, key in await ledger.events() if key == account]
    assert types == ["account.opened", "account.frozen", "account.unfrozen", "account.closed"]
    r = await ledger.client.get("/v1/accounts/acc_missing")
    assert r.status_code == 404 and r.json()["code"] == "account_not_found"
