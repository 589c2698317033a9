"""Big wallet end to end: a real ledger HTTP server (uvicorn, so the identity sandbox can call back), the
real identity sandbox process, the real embedded PostgreSQL; `verify` after every test (wallet_harness.py)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.ledger.tests.integration.wallet_harness import (
    CARD,
    SECRET,
    Wallet,
    open_merchant,
    problem,
    resident_id,
)
from services.ledger.wallet.domain import signing


# --- KYC -------------------------------------------------------------------------------------------------
async def test_person_opens_and_is_verified_by_the_identity_sandbox(wallet: Wallet) -> None:
    holder_id = await wallet.open_person()
    holder = (await wallet.client.get(f"/v1/wallet/holders/{holder_id}")).json()
    assert (holder["kyc_status"], holder["kyc_level"]) == ("unverified", 0)
    assert holder["bank_card_masked"] == "6222***********2444"
    verified = await wallet.verify_person(holder_id)
    assert (verified["kyc_status"], verified["kyc_level"], verified["kyc_reason"]) == ("verified", 2, None)
    problem(await wallet.client.post(f"/v1/wallet/holders/{holder_id}/kyc"), 409, "kyc_state_invalid")


async def test_rejection_with_reason_then_a_second_try(wallet: Wallet) -> None:
    holder_id = await wallet.open_person(name="李四")
    await wallet.identity.put("/control/rules", json={"reject_names": {"李四": "name_mismatch"}})
    rejected = await wallet.verify_person(holder_id)
    assert (rejected["kyc_status"], rejected["kyc_reason"], rejected["kyc_level"]) == ("rejected", "name_mismatch", 0)
    await wallet.identity.put("/control/rules", json={"default": "hold"})
    r = await wallet.client.post(f"/v1/wallet/holders/{holder_id}/kyc")
    assert r.json()["kyc_status"] == "pending"
    engine = create_async_engine(wallet.database_url)
    async with engine.connect() as conn:
        request_id = (
            await conn.execute(text("SELECT kyc_request_id FROM wallet_holders WHERE holder_id = :h"), {"h": holder_id})
        ).scalar_one()
    await engine.dispose()
    r = await wallet.identity.post(f"/control/verifications/{request_id}/approve", json={})
    assert r.status_code == 200, r.text
    assert (await wallet.wait_kyc(holder_id))["kyc_status"] == "verified"


async def test_callback_signature_is_checked(wallet: Wallet) -> None:
    holder_id = await wallet.open_person()
    await wallet.identity.put("/control/rules", json={"default": "hold"})
    await wallet.client.post(f"/v1/wallet/holders/{holder_id}/kyc")
    engine = create_async_engine(wallet.database_url)
    async with engine.connect() as conn:
        request_id = (
            await conn.execute(text("SELECT kyc_request_id FROM wallet_holders WHERE holder_id = :h"), {"h": holder_id})
        ).scalar_one()
    await engine.dispose()
    body = json.dumps({"request_id": request_id, "result": "approved"}).encode()
    now = int(time.time())
    forged = {signing.TIMESTAMP_HEADER: str(now), signing.SIGNATURE_HEADER: signing.sign("wrong", now, body)}
    problem(await wallet.client.post("/v1/wallet/kyc/callbacks", content=body, headers=forged), 401, "bad_signature")
    stale = {
        signing.TIMESTAMP_HEADER: str(now - 3600),
        signing.SIGNATURE_HEADER: signing.sign(SECRET, now - 3600, body),
    }
    problem(await wallet.client.post("/v1/wallet/kyc/callbacks", content=body, headers=stale), 401, "bad_signature")
    assert (await wallet.client.get(f"/v1/wallet/holders/{holder_id}")).json()["kyc_status"] == "pending"
    good = {signing.TIMESTAMP_HEADER: str(now), signing.SIGNATURE_HEADER: signing.sign(SECRET, now, body)}
    r = await wallet.client.post("/v1/wallet/kyc/callbacks", content=body, headers=good)
    assert r.status_code == 200 and r.json()["kyc_status"] == "verified", r.text
    r = await wallet.client.post("/v1/wallet/kyc/callbacks", content=body, headers=good)  # a repeat: harmless
    assert r.json()["replayed"] is True


async def test_checksums_refused_at_opening_nothing_written(wallet: Wallet) -> None:
    before = await wallet.counts()
    good = resident_id(999)
    bad_id = good[:17] + ("0" if good[17] != "0" else "1")
    cases = [
        ({"resident_id": bad_id, "phone": "13800138000"}, "invalid_resident_id"),
        ({"resident_id": good, "phone": "13800138000", "bank_card": "6222600260001072445"}, "invalid_bank_card"),
        ({"resident_id": good, "phone": "23800138000"}, "invalid_phone"),
    ]
    for extra, code in cases:
        body = {"holder_id": "usr_bad", "holder_type": "person", "name": "王五", **extra}
        problem(await wallet.client.post("/v1/wallet/holders", json=body), 422, code)
    merchant = {
        "holder_id": "mch_bad",
        "holder_type": "merchant",
        "name": "腾讯",
        "credit_code": "9144030071526726XA",
        "legal_person": "马化腾",
        "settlement_account": "6222600260001072444",
    }
    problem(await wallet.client.post("/v1/wallet/holders", json=merchant), 422, "invalid_credit_code")
    assert await wallet.counts() == before


# --- entitlements ----------------------------------------------------------------------------------------
async def test_entitlement_refusals_with_clear_codes(wallet: Wallet) -> None:
    holder_id = await wallet.open_person()  # unverified: level 0
    assert (await wallet.top_up(holder_id, 50_000)).status_code == 201
    before = await wallet.counts()
    r = await wallet.client.post(
        f"/v1/wallet/holders/{holder_id}/withdrawals", json={"withdrawal_id": "wd_x1", "amount_minor": 100}
    )
    problem(r, 403, "entitlement_denied")
    body = problem(await wallet.top_up(holder_id, 100_001), 409, "limit_exceeded")  # above the 1,000 yuan single
    assert body["limit"] == "single"
    body = problem(await wallet.top_up(holder_id, 60_000), 409, "limit_exceeded")  # daily: 500 + 600 > 1,000 yuan
    assert body["limit"] == "daily"
    assert await wallet.counts() == before
    assert (await wallet.sub(holder_id, "balance"))["balances"]["posted_balance_minor"] == 50_000


async def test_entitlement_change_is_audited_and_applies_at_once(wallet: Wallet) -> None:
    holder_id = await wallet.verified_person()
    assert (await wallet.top_up(holder_id, 10_000)).status_code == 201
    change = {
        "holder_type": "person",
        "kyc_level": 2,
        "subaccount_type": "balance",
        "action": "top_up",
        "daily_limit_minor": 12_000,
        "actor": "ops_1",
        "reason": "risk review",
    }
    r = await wallet.client.post("/v1/wallet/entitlements/changes", json=change)
    assert r.status_code == 201, r.text
    assert r.json()["before"]["daily_limit_minor"] == 5_000_000 and r.json()["after"]["daily_limit_minor"] == 12_000
    problem(await wallet.top_up(holder_id, 3_000), 409, "limit_exceeded")  # 10,000 already today
    assert (await wallet.top_up(holder_id, 2_000)).status_code == 201
    audit = (await wallet.client.get("/v1/wallet/entitlements/changes")).json()["data"]
    assert audit[0]["actor"] == "ops_1" and audit[0]["reason"] == "risk review"
    view = await wallet.my_wallet(holder_id)
    balance = next(s for s in view["subaccounts"] if s["subaccount_type"] == "balance")
    assert balance["entitlements"]["top_up"]["daily_limit_minor"] == 12_000


async def test_30_concurrent_withdrawals_never_exceed_the_daily_limit(wallet: Wallet) -> None:
    await wallet.fund_escrow(1_000_000)
    holder_id = await wallet.verified_person()
    assert (await wallet.top_up(holder_id, 100_000)).status_code == 201
    change = {
        "holder_type": "person",
        "kyc_level": 2,
        "subaccount_type": "balance",
        "action": "withdraw",
        "daily_limit_minor": 10_000,
        "actor": "ops",
        "reason": "test daily limit",
    }
    assert (await wallet.client.post("/v1/wallet/entitlements/changes", json=change)).status_code == 201

    async def withdraw(i: int) -> httpx.Response:
        body = {"withdrawal_id": f"wd_{holder_id}_{i}", "amount_minor": 700, "fee_minor": 0}
        return await wallet.client.post(f"/v1/wallet/holders/{holder_id}/withdrawals", json=body)

    results = await asyncio.gather(*(withdraw(i) for i in range(30)))
    ok = [r for r in results if r.status_code == 201]
    for r in results:
        if r.status_code != 201:
            problem(r, 409, "limit_exceeded")
    assert sum(r.json()["amount_minor"] for r in ok) <= 10_000
    assert len(ok) == 14  # 14 × 700 = 9,800; a 15th would be 10,500
    balance = (await wallet.sub(holder_id, "balance"))["balances"]
    assert balance["pending_out_minor"] == 9_800 and balance["available_balance_minor"] == 100_000 - 9_800

    # settlement's payout outcome finishes the holds: one paid, one failed (the quota comes back)
    paid, failed = ok[0].json()["id"], ok[1].json()["id"]
    r = await wallet.client.post(f"/v1/wallet/operations/{paid}/post")
    assert r.status_code == 200 and r.json()["status"] == "posted", r.text
    r = await wallet.client.post(f"/v1/wallet/operations/{failed}/void")
    assert r.status_code == 200 and r.json()["status"] == "voided", r.text
    problem(await wallet.client.post(f"/v1/wallet/operations/{failed}/post"), 409, "pending_transfer_already_voided")
    assert (await withdraw(100)).status_code == 201  # 700 freed by the void
    problem(await withdraw(101), 409, "limit_exceeded")
    assert (await withdraw(100)).json()["replayed"] is True
    # Which 14 of the 30 won is up to the race: look the paid one up by its own withdrawal id.
    paid_withdrawal_id = f"wd_{holder_id}_{results.index(ok[0])}"
    found = await wallet.client.get(
        "/v1/wallet/operations", params={"kind": "withdrawal", "idempotency_key": paid_withdrawal_id}
    )
    assert found.status_code == 200, found.text
    assert found.json()["id"] == paid
    assert found.json()["details"]["bank_card"] == {"number": CARD, "holder_name": "张三"}
    assert found.json()["status"] == "posted"
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.ledger.verify",
        "--database-url",
        wallet.database_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await cli.communicate()
    assert cli.returncode == 0, output.decode()


# --- flows -----------------------------------------------------------------------------------------------
async def test_prepaid_card_only_at_its_merchant_and_merchant_view(wallet: Wallet) -> None:
    holder_id = await wallet.verified_person()
    shop_a, shop_b = await open_merchant(wallet, 0), await open_merchant(wallet, 1)
    assert (await wallet.top_up(holder_id, 20_000)).status_code == 201
    r = await wallet.client.post(
        f"/v1/wallet/holders/{holder_id}/prepaid-cards",
        json={"order_id": "ord_1", "merchant_id": shop_a, "amount_minor": 5_000},
    )
    assert r.status_code == 201, r.text
    card = r.json()["details"]["account_id"]
    r = await wallet.top_up(holder_id, 1_000, subaccount_type="prepaid", merchant_id=shop_a)  # card bought by WeChat
    assert r.status_code == 201 and r.json()["details"]["account_id"] == card, r.text

    pay = {
        "merchant_id": shop_a,
        "amount_minor": 4_000,
        "platform_fee_minor": 24,
        "subaccount_type": "prepaid",
        "subaccount_id": card,
    }
    r = await wallet.client.post(f"/v1/wallet/holders/{holder_id}/payments", json={**pay, "payment_id": "pay_a1"})
    assert r.status_code == 201, r.text
    before = await wallet.counts()
    r = await wallet.client.post(
        f"/v1/wallet/holders/{holder_id}/payments", json={**pay, "payment_id": "pay_b1", "merchant_id": shop_b}
    )
    problem(r, 403, "prepaid_wrong_merchant")
    r = await wallet.client.post(
        f"/v1/wallet/holders/{holder_id}/payments",
        json={**pay, "payment_id": "pay_b2", "merchant_id": shop_b, "subaccount_id": None},
    )
    problem(r, 403, "prepaid_wrong_merchant")
    assert await wallet.counts() == before
    prepaid = await wallet.sub(holder_id, "prepaid", shop_a)
    assert prepaid["balances"]["posted_balance_minor"] == 2_000
    # balance spend at shop B (held, then confirmed by the cashier)
    r = await wallet.client.post(
        f"/v1/wallet/holders/{holder_id}/payments",
        json={
            "payment_id": "pay_b3",
            "merchant_id": shop_b,
            "amount_minor": 3_000,
            "pending": True,
            "timeout_seconds": 600,
        },
    )
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    assert (await wallet.client.post(f"/v1/wallet/operations/{r.json()['id']}/post")).status_code == 200
    r = await wallet.client.post(f"/v1/wallet/holders/{shop_a}/kyc")  # merchants are verified the same way
    assert r.status_code == 202, r.text
    assert (await wallet.wait_kyc(shop_a))["kyc_status"] == "verified"
    view_a = (await wallet.client.get(f"/v1/wallet/merchants/{shop_a}/balances")).json()
    view_b = (await wallet.client.get(f"/v1/wallet/merchants/{shop_b}/balances")).json()
    assert (view_a["pending_minor"], view_a["settled_minor"], view_a["available_to_withdraw_minor"]) == (3_976, 0, 0)
    assert view_b["pending_minor"] == 3_000
    # The merchant holder's 2201 is the chart account: the cashier's wallet connector opens it by the chart key
    # with the documented body and finds it (it was a 409 idempotency_key_reused, failing every wallet payment).
    chart = {"holder_id": shop_a, "currency": "CNY", "kind": "merchant_pending", "code": "2201", "metadata": {}}
    key = f"chart:merchant_pending:{shop_a}:CNY"
    r = await wallet.client.post("/v1/accounts", json={**chart, "idempotency_key": key})
    assert r.status_code == 200, r.text
    [row] = await wallet.sql("SELECT id, metadata FROM accounts WHERE idempotency_key = :k", k=key)
    assert r.json()["id"] == row["id"] and row["metadata"]["wallet_subaccount"] == "merchant_pending"


async def test_bnpl_spend_bill_repay_and_limit_restored(wallet: Wallet) -> None:
    holder_id = await wallet.verified_person()
    shop = await open_merchant(wallet, 2)
    assert (await wallet.top_up(holder_id, 10_000)).status_code == 201
    r = await wallet.client.put(f"/v1/wallet/holders/{holder_id}/credit-line", json={"limit_minor": 5_000})
    assert r.status_code == 200 and r.json()["credit_limit_minor"] == 5_000, r.text

    async def spend(key: str, amount_minor: int) -> httpx.Response:
        body = {"payment_id": key, "merchant_id": shop, "amount_minor": amount_minor, "subaccount_type": "credit"}
        return await wallet.client.post(f"/v1/wallet/holders/{holder_id}/payments", json=body)

    assert (await spend("bnpl_1", 3_000)).status_code == 201
    problem(await spend("bnpl_2", 2_500), 409, "insufficient_funds")  # beyond the line
    credit = (await wallet.my_wallet(holder_id))["credit"]
    assert (credit["owed_minor"], credit["available_minor"]) == (3_000, 2_000)
    problem(
        await wallet.client.put(f"/v1/wallet/holders/{holder_id}/credit-line", json={"limit_minor": 2_000}),
        409,
        "credit_line_below_debt",
    )

    r = await wallet.client.post(f"/v1/wallet/holders/{holder_id}/bills", json={"period": "202611", "due_in_days": 20})
    assert r.status_code == 201, r.text
    bill = r.json()
    assert (bill["amount_due_minor"], bill["status"]) == (3_000, "open")
    again = await wallet.client.post(f"/v1/wallet/holders/{holder_id}/bills", json={"period": "202611"})
    assert again.status_code == 200 and again.json()["id"] == bill["id"]
    problem(
        await wallet.client.post(f"/v1/wallet/holders/{holder_id}/bills", json={"period": "202612"}),
        409,
        "nothing_to_bill",
    )

    repay = f"/v1/wallet/bills/{bill['id']}/repayments"
    problem(
        await wallet.client.post(repay, json={"repayment_id": "rp_0", "amount_minor": 3_001}),
        422,
        "repayment_too_large",
    )
    assert (await wallet.client.post(repay, json={"repayment_id": "rp_1", "amount_minor": 1_000})).status_code == 201
    assert (await wallet.client.get(f"/v1/wallet/bills/{bill['id']}")).json()["repaid_minor"] == 1_000
    assert (await wallet.client.post(repay, json={"repayment_id": "rp_2", "amount_minor": 2_000})).status_code == 201
    paid = (await wallet.client.get(f"/v1/wallet/bills/{bill['id']}")).json()
    assert (paid["status"], paid["repaid_minor"]) == ("paid", 3_000)
    view = await wallet.my_wallet(holder_id)
    assert (view["credit"]["owed_minor"], view["credit"]["available_minor"]) == (0, 5_000)
    assert view["totals"]["CNY"]["posted_balance_minor"] == 10_000 - 3_000

    # late: a bill due at once is overdue, and new credit spending pauses until it is repaid
    assert (await spend("bnpl_3", 1_000)).status_code == 201
    late = (
        await wallet.client.post(f"/v1/wallet/holders/{holder_id}/bills", json={"period": "202612", "due_in_days": 0})
    ).json()
    assert late["status"] == "overdue"
    problem(await spend("bnpl_4", 100), 403, "entitlement_denied")
    r = await wallet.client.post(
        f"/v1/wallet/bills/{late['id']}/repayments", json={"repayment_id": "rp_3", "amount_minor": 1_000}
    )
    assert r.status_code == 201
    assert (await spend("bnpl_4", 100)).status_code == 201


async def test_my_wallet_totals_equal_ledger_balances_and_history_pages(wallet: Wallet) -> None:
    holder_id = await wallet.verified_person()
    shop = await open_merchant(wallet, 3)
    for amount in (1_000, 2_000, 3_000):
        assert (await wallet.top_up(holder_id, amount)).status_code == 201
    await wallet.client.post(
        f"/v1/wallet/holders/{holder_id}/prepaid-cards",
        json={"order_id": "ord_m", "merchant_id": shop, "amount_minor": 1_500},
    )
    r = await wallet.client.post(
        f"/v1/wallet/holders/{holder_id}/points/grants", json={"grant_id": "g1", "points": 900}
    )
    assert r.status_code == 201, r.text
    r = await wallet.client.post(
        f"/v1/wallet/holders/{holder_id}/points/exchanges", json={"exchange_id": "x1", "points": 500}
    )
    assert r.status_code == 201 and r.json()["details"]["value_minor"] == 500, r.text
    problem(
        await wallet.client.post(
            f"/v1/wallet/holders/{holder_id}/points/exchanges", json={"exchange_id": "x2", "points": 401}
        ),
        409,
        "insufficient_funds",
    )

    view = await wallet.my_wallet(holder_id)  # read-your-writes: right after the last answer
    assert view["points"] == 400
    ledger_total = 0
    for sub in view["subaccounts"]:
        acc = (await wallet.client.get(f"/v1/accounts/{sub['account_id']}")).json()
        assert acc["balances"]["posted_balance_minor"] == sub["balances"]["posted_balance_minor"]
        assert acc["balances"]["available_balance_minor"] == sub["balances"]["available_balance_minor"]
        if acc["currency"] == "CNY":
            ledger_total += acc["balances"]["posted_balance_minor"]
    assert view["totals"]["CNY"]["posted_balance_minor"] == ledger_total == 6_000 + 500
    assert {s["subaccount_type"] for s in view["subaccounts"]} >= {
        "balance",
        "prepaid",
        "points",
        "coupon",
        "credit",
        "bank_class2",
        "psp",
    }
    assert view["recent"][0]["operation"] == "points_exchange"

    balance = next(s for s in view["subaccounts"] if s["subaccount_type"] == "balance")["account_id"]
    url = f"/v1/wallet/holders/{holder_id}/subaccounts/{balance}/history"
    page1 = (await wallet.client.get(url, params={"limit": 3})).json()
    page2 = (await wallet.client.get(url, params={"limit": 3, "cursor": page1["next_cursor"]})).json()
    amounts = [i["amount_minor"] for i in page1["data"] + page2["data"]]
    assert amounts == [500, 1_500, 3_000, 2_000, 1_000]
    assert page1["has_more"] is True and page2["has_more"] is False and page2["next_cursor"] is None
    for bad, code in (({"cursor": "pay_1"}, "validation_failed"), ({"before": "1"}, "unknown_parameter")):
        problem(await wallet.client.get(url, params=bad), 422, code)
    problem(
        await wallet.client.get(f"/v1/wallet/holders/other/subaccounts/{balance}/history"), 404, "subaccount_not_found"
    )


async def test_top_up_is_idempotent_by_payment_id(wallet: Wallet) -> None:
    holder_id = await wallet.verified_person()
    body = {"payment_id": "pay_dup", "amount_minor": 1_000, "channel": "alipay"}
    first = await wallet.client.post(f"/v1/wallet/holders/{holder_id}/top-ups", json=body)
    again = await wallet.client.post(f"/v1/wallet/holders/{holder_id}/top-ups", json=body)
    assert (first.status_code, again.status_code, again.json()["replayed"]) == (201, 200, True)
    assert first.json()["transfer_id"] == again.json()["transfer_id"]
    other = await wallet.client.post(f"/v1/wallet/holders/{holder_id}/top-ups", json={**body, "amount_minor": 2_000})
    problem(other, 409, "idempotency_key_reused")
    assert (await wallet.sub(holder_id, "balance"))["balances"]["posted_balance_minor"] == 1_000


async def test_bad_input_on_every_endpoint_is_problem_json_and_changes_nothing(wallet: Wallet) -> None:
    holder_id = await wallet.verified_person()
    assert (await wallet.top_up(holder_id, 1_000)).status_code == 201
    h = f"/v1/wallet/holders/{holder_id}"
    before = await wallet.counts()
    cases: list[tuple[str, str, Any, int, str]] = [
        (
            "POST",
            "/v1/wallet/holders",
            {"holder_id": "x", "holder_type": "alien", "name": "n"},
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/wallet/holders",
            {"holder_id": "x", "holder_type": "person", "name": "n"},
            422,
            "validation_failed",
        ),
        ("GET", "/v1/wallet/holders/nobody", None, 404, "holder_not_found"),
        ("POST", "/v1/wallet/holders/nobody/kyc", None, 404, "holder_not_found"),
        ("POST", "/v1/wallet/kyc/callbacks", {"request_id": "r"}, 401, "bad_signature"),
        ("POST", "/v1/wallet/entitlements/changes", {"holder_type": "person"}, 422, "validation_failed"),
        (
            "POST",
            "/v1/wallet/entitlements/changes",
            {
                "holder_type": "person",
                "kyc_level": 2,
                "subaccount_type": "balance",
                "action": "spend",
                "actor": "a",
                "reason": "r",
            },
            422,
            "validation_failed",
        ),
        (
            "POST",
            f"{h}/top-ups",
            {"payment_id": "p", "amount_minor": 1.5, "channel": "wechatpay"},
            422,
            "validation_failed",
        ),
        (
            "POST",
            f"{h}/top-ups",
            {"payment_id": "p", "amount_minor": 0, "channel": "wechatpay"},
            422,
            "validation_failed",
        ),
        (
            "POST",
            f"{h}/top-ups",
            {"payment_id": "p", "amount_minor": 10, "channel": "wechatpay", "channel_fee_minor": 11},
            422,
            "validation_failed",
        ),
        (
            "POST",
            f"{h}/top-ups",
            {"payment_id": "p", "amount_minor": 10, "channel": "wechatpay", "subaccount_type": "prepaid"},
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/wallet/holders/nobody/top-ups",
            {"payment_id": "p", "amount_minor": 10, "channel": "x"},
            404,
            "holder_not_found",
        ),
        ("POST", f"{h}/withdrawals", {"withdrawal_id": "w", "amount_minor": -5}, 422, "validation_failed"),
        (
            "POST",
            f"{h}/withdrawals",
            {"withdrawal_id": "w", "amount_minor": 5, "currency": "cny"},
            422,
            "validation_failed",
        ),
        ("POST", f"{h}/withdrawals", {"withdrawal_id": "w", "amount_minor": 5_000}, 409, "insufficient_funds"),
        (
            "POST",
            f"{h}/payments",
            {"payment_id": "p", "merchant_id": "m", "amount_minor": 5, "platform_fee_minor": 5},
            422,
            "validation_failed",
        ),
        (
            "POST",
            f"{h}/payments",
            {"payment_id": "p", "merchant_id": "m", "amount_minor": 5, "subaccount_type": "points"},
            422,
            "validation_failed",
        ),
        (
            "POST",
            f"{h}/payments",
            {"payment_id": "p", "merchant_id": "m", "amount_minor": 5_000},
            409,
            "insufficient_funds",
        ),
        (
            "POST",
            f"{h}/payments",
            {"payment_id": "p", "merchant_id": "m", "amount_minor": 5, "extra": 1},
            422,
            "validation_failed",
        ),
        ("POST", f"{h}/prepaid-cards", {"order_id": "o", "merchant_id": "m"}, 422, "validation_failed"),
        ("POST", f"{h}/points/grants", {"grant_id": "g", "points": "10"}, 422, "validation_failed"),
        ("POST", f"{h}/points/exchanges", {"exchange_id": "e", "points": 0}, 422, "validation_failed"),
        ("POST", f"{h}/points/exchanges", {"exchange_id": "e", "points": 100}, 409, "insufficient_funds"),
        ("GET", "/v1/wallet/operations/wop_nope", None, 404, "operation_not_found"),
        ("POST", "/v1/wallet/operations/wop_nope/post", None, 404, "operation_not_found"),
        ("POST", "/v1/wallet/operations/wop_nope/void", None, 404, "operation_not_found"),
        ("PUT", f"{h}/credit-line", {"limit_minor": -1}, 422, "validation_failed"),
        ("PUT", "/v1/wallet/holders/nobody/credit-line", {"limit_minor": 1}, 404, "holder_not_found"),
        ("POST", f"{h}/bills", {"period": "202613"}, 422, "validation_failed"),
        ("POST", f"{h}/bills", {"period": "202611"}, 409, "nothing_to_bill"),
        ("GET", "/v1/wallet/bills/bil_nope", None, 404, "bill_not_found"),
        (
            "POST",
            "/v1/wallet/bills/bil_nope/repayments",
            {"repayment_id": "r", "amount_minor": 1},
            404,
            "bill_not_found",
        ),
        ("POST", "/v1/wallet/bills/bil_nope/repayments", {"repayment_id": "r"}, 422, "validation_failed"),
        ("GET", "/v1/wallet/holders/nobody/my-wallet", None, 404, "holder_not_found"),
        ("GET", f"{h}/my-wallet?recent_limit=0", None, 422, "validation_failed"),
        ("GET", f"{h}/subaccounts/acc_nope/history", None, 404, "subaccount_not_found"),
        ("GET", f"{h}/subaccounts/acc_nope/history?cursor=abc", None, 422, "validation_failed"),
        ("GET", "/v1/wallet/entitlements/changes?limit=0", None, 422, "validation_failed"),
        ("GET", "/v1/wallet/operations?kind=BAD&idempotency_key=x", None, 422, "validation_failed"),
        ("GET", "/v1/wallet/operations?kind=withdrawal&idempotency_key=nope", None, 404, "operation_not_found"),
        (
            "POST",
            f"{h}/transfers",
            {"transfer_id": "t", "to_holder_id": holder_id, "amount_minor": 1},
            422,
            "validation_failed",
        ),
        (
            "POST",
            f"{h}/transfers",
            {"transfer_id": "t", "to_holder_id": "x", "amount_minor": 0},
            422,
            "validation_failed",
        ),
        ("GET", "/v1/wallet/merchants/m/balances?currency=yen", None, 422, "validation_failed"),
    ]
    for method, url, body, status, code in cases:
        r = await wallet.client.request(method, url, json=body)
        assert r.status_code == status, (method, url, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), (url, r.headers)
        assert r.json()["code"] == code, (url, r.json())
    r = await wallet.client.post(
        "/v1/wallet/holders", content=b"{not json", headers={"content-type": "application/json"}
    )
    problem(r, 400, "malformed_request")
    after = await wallet.counts()
    assert after == before


async def test_a_user_identity_sees_only_its_own_wallet(wallet: Wallet) -> None:
    from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
    from libs.common.settings import DEMO_INTERNAL_TOKEN_SECRET

    mine, other = await wallet.open_person(), await wallet.open_person()
    token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="k1", user=mine)
    headers = {IDENTITY_HEADER: token}
    assert (await wallet.client.get(f"/v1/wallet/holders/{mine}/my-wallet", headers=headers)).status_code == 200
    problem(await wallet.client.get(f"/v1/wallet/holders/{other}/my-wallet", headers=headers), 403, "forbidden")
    problem(await wallet.client.post(f"/v1/wallet/holders/{other}/kyc", headers=headers), 403, "forbidden")
    service = {IDENTITY_HEADER: mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="k1", service="cashier")}
    assert (await wallet.client.get(f"/v1/wallet/holders/{other}/my-wallet", headers=service)).status_code == 200

    # A user may not create value in their own wallet: top-ups and grants come from the platform or a service.
    top_up = {"payment_id": "pay_self", "amount_minor": 1_000, "channel": "wechatpay", "channel_fee_minor": 0}
    problem(
        await wallet.client.post(f"/v1/wallet/holders/{mine}/top-ups", json=top_up, headers=headers), 403, "forbidden"
    )
    problem(
        await wallet.client.post(f"/v1/wallet/holders/{mine}/points/grants", json={}, headers=headers), 403, "forbidden"
    )
    assert (await wallet.sub(mine, "balance"))["balances"]["posted_balance_minor"] == 0
    r = await wallet.client.post(f"/v1/wallet/holders/{mine}/top-ups", json=top_up, headers=service)
    assert r.status_code == 201, r.text


async def test_transfer_between_people_needs_the_entitlement(wallet: Wallet) -> None:
    sender, receiver, unverified = (
        await wallet.verified_person(),
        await wallet.verified_person(),
        await wallet.open_person(),
    )
    assert (await wallet.top_up(sender, 5_000)).status_code == 201
    assert (await wallet.top_up(unverified, 5_000)).status_code == 201
    body = {"transfer_id": "t1", "to_holder_id": receiver, "amount_minor": 1_200}
    r = await wallet.client.post(f"/v1/wallet/holders/{sender}/transfers", json=body)
    assert r.status_code == 201, r.text
    assert (await wallet.sub(receiver, "balance"))["balances"]["posted_balance_minor"] == 1_200
    assert (await wallet.sub(sender, "balance"))["balances"]["posted_balance_minor"] == 3_800
    r = await wallet.client.post(f"/v1/wallet/holders/{unverified}/transfers", json={**body, "transfer_id": "t2"})
    problem(r, 403, "entitlement_denied")
    r = await wallet.client.post(f"/v1/wallet/holders/{sender}/transfers", json={**body, "to_holder_id": "nobody"})
    problem(r, 404, "holder_not_found")
