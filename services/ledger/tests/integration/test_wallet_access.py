"""Who may do what on the wallet API (wallet/api/access.py): a user does everything of its own (open, KYC,
top-up orders, withdraw, pay, prepaid cards, transfers, points exchange, repayments, reads) and nothing of
anyone else's; operator-only routes stay closed to users and merchants even on their own wallet."""

from __future__ import annotations

import re
from typing import Any

from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.settings import DEMO_INTERNAL_TOKEN_SECRET
from services.ledger.tests.integration.wallet_harness import (
    CARD,
    PERSON_IDS,
    Wallet,
    open_merchant,
    problem,
    resident_id,
)
from services.ledger.wallet.api.access import OPERATOR_ONLY_ROUTES, OWNER_CHECKED_ROUTES
from services.ledger.wallet.api.routes import kyc as wallet_kyc
from services.ledger.wallet.api.routes import topup as wallet_topup
from services.ledger.wallet.api.routes import wallet as wallet_routes


def as_user(user: str) -> dict[str, str]:
    return {IDENTITY_HEADER: mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="k1", user=user)}


def as_merchant(merchant_id: str) -> dict[str, str]:
    return {IDENTITY_HEADER: mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="k1", merchant_id=merchant_id)}


def as_platform() -> dict[str, str]:
    """Minted at the call: a token minted at import would expire before a long suite reaches the test."""
    return {IDENTITY_HEADER: mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="k1", platform="plt_demo")}


async def test_a_user_does_everything_of_its_own_through_its_identity(wallet: Wallet) -> None:
    me = f"usr_self_{next(PERSON_IDS)}"
    mine = as_user(me)
    c = wallet.client
    person = {
        "holder_id": me,
        "holder_type": "person",
        "name": "王五",
        "resident_id": resident_id(next(PERSON_IDS)),
        "phone": "13700137000",
        "bank_card": CARD,
    }
    problem(
        await c.post("/v1/wallet/holders", json={**person, "holder_id": "usr_someone"}, headers=mine), 403, "forbidden"
    )
    assert (await c.post("/v1/wallet/holders", json=person, headers=mine)).status_code == 201
    r = await c.post(f"/v1/wallet/holders/{me}/kyc", headers=mine)
    assert r.status_code == 202, r.text
    assert (await wallet.wait_kyc(me))["kyc_level"] == 2
    # money comes in from the platform side (a paid top-up), never from the user itself
    assert (
        await c.post(
            f"/v1/wallet/holders/{me}/top-ups",
            json={"payment_id": "pay_x", "amount_minor": 100, "channel": "wechatpay"},
            headers=mine,
        )
    ).status_code == 403
    assert (await wallet.top_up(me, 50_000)).status_code == 201
    await wallet.fund_escrow(50_000)
    shop = await open_merchant(wallet, 2)

    r = await c.post(
        f"/v1/wallet/holders/{me}/withdrawals",
        json={"withdrawal_id": "wd_self", "amount_minor": 1_000, "fee_minor": 5},
        headers=mine,
    )
    problem(r, 422, "validation_failed")  # the fee is the platform's (0 here), not the user's choice
    r = await c.post(
        f"/v1/wallet/holders/{me}/withdrawals", json={"withdrawal_id": "wd_self", "amount_minor": 1_000}, headers=mine
    )
    assert r.status_code == 201, r.text
    withdrawal = r.json()
    assert withdrawal["details"]["bank_card"]["number"] == "6222***********2444"  # masked for the user
    pay = {"payment_id": "pay_self_1", "merchant_id": shop, "amount_minor": 2_000}
    problem(
        await c.post(f"/v1/wallet/holders/{me}/payments", json={**pay, "pending": True}, headers=mine), 403, "forbidden"
    )
    problem(
        await c.post(f"/v1/wallet/holders/{me}/payments", json={**pay, "platform_fee_minor": 10}, headers=mine),
        403,
        "forbidden",
    )
    assert (await c.post(f"/v1/wallet/holders/{me}/payments", json=pay, headers=mine)).status_code == 201
    r = await c.post(
        f"/v1/wallet/holders/{me}/prepaid-cards",
        json={"order_id": "ord_self", "merchant_id": shop, "amount_minor": 3_000},
        headers=mine,
    )
    assert r.status_code == 201, r.text
    friend = await wallet.verified_person()
    r = await c.post(
        f"/v1/wallet/holders/{me}/transfers",
        json={"transfer_id": "t_self", "to_holder_id": friend, "amount_minor": 500},
        headers=mine,
    )
    assert r.status_code == 201, r.text
    problem(
        await c.post(f"/v1/wallet/holders/{me}/points/grants", json={"grant_id": "g1", "points": 500}, headers=mine),
        403,
        "forbidden",
    )
    assert (
        await c.post(
            f"/v1/wallet/holders/{me}/points/grants", json={"grant_id": "g1", "points": 500}, headers=as_platform()
        )
    ).status_code == 201
    r = await c.post(
        f"/v1/wallet/holders/{me}/points/exchanges", json={"exchange_id": "x1", "points": 300}, headers=mine
    )
    assert r.status_code == 201, r.text

    # BNPL: the platform sets the line and bills; the user spends, reads and repays its own bill
    problem(
        await c.put(f"/v1/wallet/holders/{me}/credit-line", json={"limit_minor": 10_000}, headers=mine),
        403,
        "forbidden",
    )
    assert (await c.put(f"/v1/wallet/holders/{me}/credit-line", json={"limit_minor": 10_000})).status_code == 200
    r = await c.post(
        f"/v1/wallet/holders/{me}/payments",
        json={**pay, "payment_id": "pay_self_2", "subaccount_type": "credit", "amount_minor": 4_000},
        headers=mine,
    )
    assert r.status_code == 201, r.text
    problem(await c.post(f"/v1/wallet/holders/{me}/bills", json={"period": "202611"}, headers=mine), 403, "forbidden")
    bill = (await c.post(f"/v1/wallet/holders/{me}/bills", json={"period": "202611"})).json()
    assert (await c.get(f"/v1/wallet/bills/{bill['id']}", headers=mine)).json()["amount_due_minor"] == 4_000
    r = await c.post(
        f"/v1/wallet/bills/{bill['id']}/repayments",
        json={"repayment_id": "rp_self", "amount_minor": 4_000},
        headers=mine,
    )
    assert r.status_code == 201, r.text

    # reads of its own; the hold is finished by settlement, never by the user
    op = await c.get(f"/v1/wallet/operations/{withdrawal['id']}", headers=mine)
    assert op.status_code == 200 and op.json()["details"]["bank_card"]["number"] == "6222***********2444"
    found = await c.get(
        "/v1/wallet/operations", params={"kind": "withdrawal", "idempotency_key": "wd_self"}, headers=mine
    )
    assert found.status_code == 200 and found.json()["id"] == withdrawal["id"]
    problem(await c.post(f"/v1/wallet/operations/{withdrawal['id']}/post", headers=mine), 403, "forbidden")
    assert (await c.get("/v1/wallet/entitlements", headers=mine)).status_code == 200
    view = (await c.get(f"/v1/wallet/holders/{me}/my-wallet", headers=mine)).json()
    # 50,000 − 1,000 held − 2,000 paid − 3,000 to the card − 500 sent + 300 from points − 4,000 repaid
    balance = next(v for v in view["subaccounts"] if v["subaccount_type"] == "balance")
    assert balance["balances"]["available_balance_minor"] == 50_000 - 1_000 - 2_000 - 3_000 - 500 + 300 - 4_000
    assert view["bills"][0]["status"] == "paid"

    # a merchant sees its own balances, nobody else's, and no person's wallet
    r = await c.get(f"/v1/wallet/merchants/{shop}/balances", headers=as_merchant(shop))
    assert r.status_code == 200 and r.json()["pending_minor"] == 2_000 + 4_000, r.text
    problem(await c.get(f"/v1/wallet/merchants/{shop}/balances", headers=mine), 403, "forbidden")
    problem(await c.get(f"/v1/wallet/holders/{me}/my-wallet", headers=as_merchant(shop)), 403, "forbidden")


async def test_every_route_refuses_another_holders_resources_and_operator_routes(wallet: Wallet) -> None:
    """Table-driven over the app's own routes, so a route added later is covered: each one is called by a user
    for someone else's holder or resource (and each operator route for the user's own) → 403, nothing written."""
    me, other = await wallet.verified_person(), await wallet.verified_person()
    assert (await wallet.top_up(other, 20_000)).status_code == 201
    await wallet.fund_escrow(20_000)
    r = await wallet.client.post(
        f"/v1/wallet/holders/{other}/withdrawals", json={"withdrawal_id": "wd_other", "amount_minor": 100}
    )
    others_operation = r.json()["id"]
    await wallet.client.put(f"/v1/wallet/holders/{other}/credit-line", json={"limit_minor": 5_000})
    await wallet.client.post(
        f"/v1/wallet/holders/{other}/payments",
        json={"payment_id": "p_o", "merchant_id": "m", "amount_minor": 1_000, "subaccount_type": "credit"},
    )
    others_bill = (await wallet.client.post(f"/v1/wallet/holders/{other}/bills", json={"period": "202610"})).json()
    values = {
        "holder_id": other,
        "merchant_id": other,
        "operation_id": others_operation,
        "bill_id": others_bill["id"],
        "account_id": "acc_x",
        "order_id": "wto_x",
    }
    mine = as_user(me)
    before = await wallet.counts()
    checked = 0
    for route in create_app_routes():
        path, methods = route
        for method in methods:
            concrete = re.sub(r"{(\w+)}", lambda m: values[m.group(1)], path)
            own = re.sub(r"{(\w+)}", lambda m: me if m.group(1) == "holder_id" else values[m.group(1)], path)
            body: dict[str, Any] = (
                {"repayment_id": "rp_x", "amount_minor": 1}
                if path.endswith("/repayments")
                else {
                    "holder_id": other,
                    "holder_type": "person",
                    "name": "x",
                    "resident_id": resident_id(999),
                    "phone": "13800138000",
                }
            )
            targets = [concrete]
            if path in OPERATOR_ONLY_ROUTES:
                targets.append(own)
            for target in targets:
                if (method, path) == ("GET", "/v1/wallet/entitlements"):
                    continue  # the rules in force: readable by anyone
                lookup = {"kind": "withdrawal", "idempotency_key": "wd_other"}
                params = lookup if target.endswith("/operations") else None
                r = await wallet.client.request(
                    method, target, json=body if method != "GET" else None, params=params, headers=mine
                )
                assert r.status_code == 403, (method, target, r.status_code, r.text)
                checked += 1
    assert checked >= 25
    assert await wallet.counts() == before
    assert ("POST", "/v1/wallet/holders") in OWNER_CHECKED_ROUTES


def create_app_routes() -> list[tuple[str, set[str]]]:
    """Every wallet route of the app but the identity provider's signed callback (no identity at all)."""
    out = []
    for route in [*wallet_routes.router.routes, *wallet_kyc.router.routes, *wallet_topup.router.routes]:
        path = getattr(route, "path", "")
        if path.startswith("/v1/wallet") and not path.endswith("/kyc/callbacks"):
            out.append((path, set(getattr(route, "methods", set())) - {"HEAD"}))
    return out
