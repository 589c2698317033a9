"""The big wallet's "Done when", as a user lives it: every call through the gateway, every part a real process.

`python -m deploy.launcher run` starts PostgreSQL, the broker, every service, the gateway and the sandboxes,
and seeds the platform (admin key), the demo merchant (signed API key) and the platform's collecting
merchant for top-ups (`mch_wallet`). Then, through the gateway only:

1. the platform creates a user and a user token; the user opens its own wallet and is verified by the
   identity sandbox (signed callback to the ledger);
2. the user orders a top-up: ledger → cashier (`purpose=wallet_topup`, merchant `mch_wallet`) → WeChat Pay
   sandbox (JSAPI); the sandbox's payer simulation pays it; the ledger's consumer of `payment.succeeded`
   credits the wallet (§3.7, `top_up.credited`);
3. the user pays the demo merchant from the balance; buys a prepaid card and uses it at that merchant;
4. the user withdraws to its verified card: `withdrawal.requested` → settlement → bank sandbox payout →
   the hold posted;
5. BNPL: the platform grants a credit line, the user spends on it, the platform bills, the user repays;
6. My Wallet shows all of it; the merchant sees its balances with its own signed key, and nobody else's.
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk" / "python"))
from juhe_sdk import APIError, Client

from tests.e2e.test_launcher import Launched, eventually

pytestmark = pytest.mark.e2e
CARD = "6222600260001072444"  # Luhn-valid: the user's own bank card (registered at the bank sandbox)
NAME = "赵六"


def resident_id() -> str:
    from services.ledger.wallet.domain.kyc import resident_id_check_char

    first17 = f"44030819900101{uuid.uuid4().int % 1000:03d}"
    return first17 + resident_id_check_char(first17)


@dataclass
class Platform:
    ports: dict[str, int]
    keys: dict[str, Any]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


@pytest.fixture
def platform(demo_platform: Launched) -> Platform:
    """The shared demo platform (tests/e2e/conftest.py): this test's user is its own."""
    return Platform(demo_platform.ports, json.loads((demo_platform.data_dir / "demo-keys.json").read_text()))


class Gateway:
    """One identity's view of the gateway: every write carries its own Idempotency-Key."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)

    def write(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": f"e2e-{uuid.uuid4().hex}"}
        return self.http.request(method, path, json=body if body is not None else {}, headers=headers)

    def ok(self, r: httpx.Response, *statuses: int) -> dict[str, Any]:
        assert r.status_code in (statuses or (200, 201, 202)), f"{r.request.method} {r.request.url}: {r.text}"
        return dict(r.json())


def test_a_user_lives_the_whole_wallet_through_the_gateway(platform: Platform) -> None:
    gw = platform.url("gateway")
    admin = Gateway(gw, platform.keys["admin_key"])
    merchant_id = platform.keys["merchant_id"]
    merchant = Client(gw, key_id=platform.keys["key_id"], secret=platform.keys["secret"])
    # Wallet money is live money (docs/test-mode.md "Wallets"): the merchant's test key reads its test book, so the
    # platform reads the merchant's live book.
    balances = f"/v1/wallet/merchants/{merchant_id}/balances"
    before = admin.ok(admin.get(balances, livemode="true"))

    # --- 1. a new user, its own wallet, verified by the identity sandbox ----------------------------------
    user_id = f"usr_e2e_{uuid.uuid4().hex[:8]}"
    admin.ok(admin.write("POST", "/v1/platform/users", {"name": NAME, "user_id": user_id}), 201)
    token = admin.ok(admin.write("POST", f"/v1/platform/users/{user_id}/tokens", {"ttl_seconds": 3600}), 201)
    user = Gateway(gw, token["token"])
    holder = {
        "holder_id": user_id,
        "holder_type": "person",
        "name": NAME,
        "resident_id": resident_id(),
        "phone": "13800138000",
        "bank_card": CARD,
    }
    r = user.write("POST", "/v1/wallet/holders", {**holder, "holder_id": "usr_someone_else"})
    assert r.status_code == 403, r.text  # its own wallet only
    user.ok(user.write("POST", "/v1/wallet/holders", holder), 201)
    assert user.ok(user.write("POST", f"/v1/wallet/holders/{user_id}/kyc"), 202)["kyc_status"] == "pending"
    verified = eventually(
        lambda: (h := user.ok(user.get(f"/v1/wallet/holders/{user_id}")))["kyc_status"] == "verified" and h,
        "the identity sandbox's verdict",
    )
    assert verified["kyc_level"] == 2

    # --- 2. top-up: ledger → cashier → WeChat Pay sandbox, paid by its payer simulation -------------------
    order_body = {
        "amount_minor": 100_000,
        "scene": "jsapi",
        "payer": {"openid": "o_e2e_payer"},
        "idempotency_key": "topup-1",
    }
    order = user.ok(user.write("POST", f"/v1/wallet/holders/{user_id}/top-up-orders", order_body), 201)
    again = user.ok(user.write("POST", f"/v1/wallet/holders/{user_id}/top-up-orders", order_body), 200)
    assert again["payment_id"] == order["payment_id"] and order["credited"] is False
    payment = order["payment"]
    assert (payment["merchant_id"], payment["status"], payment["channel"]) == ("mch_wallet", "processing", "wechatpay")
    assert payment["payer_action"], payment  # what the payer's WeChat needs (JSAPI params)
    r = user.write(
        "POST",
        f"/v1/wallet/holders/{user_id}/top-ups",
        {"payment_id": "pay_self", "amount_minor": 100, "channel": "wechatpay"},
    )
    assert r.status_code == 403, r.text  # a user never credits itself
    out_trade_no = payment["attempts"][-1]["out_trade_no"]
    paid = httpx.post(
        f"{platform.url('wechatpay')}/control/orders/{out_trade_no}/approve",
        json={"payer_openid": "o_e2e_payer"},
        timeout=10,
    )
    assert paid.status_code == 200, paid.text
    credited = eventually(
        lambda: (o := user.ok(user.get(f"/v1/wallet/holders/{user_id}/top-up-orders/{order['id']}")))["credited"] and o,
        "the top-up to be credited",
    )
    assert credited["payment"]["status"] == "succeeded"
    top_up = user.ok(user.get(f"/v1/wallet/operations/{credited['operation_id']}"))
    assert (top_up["kind"], top_up["status"], top_up["amount_minor"]) == ("top_up", "posted", 100_000)
    assert balance(user, user_id) == 100_000

    # --- 3. pay the merchant from the balance; buy a prepaid card there and use it --------------------------
    pay = {"payment_id": f"pay_e2e_{uuid.uuid4().hex[:8]}", "merchant_id": merchant_id, "amount_minor": 12_000}
    user.ok(user.write("POST", f"/v1/wallet/holders/{user_id}/payments", pay), 201)
    card = user.ok(
        user.write(
            "POST",
            f"/v1/wallet/holders/{user_id}/prepaid-cards",
            {"order_id": "ord_e2e_card", "merchant_id": merchant_id, "amount_minor": 20_000},
        ),
        201,
    )
    used = {
        "payment_id": f"pay_e2e_{uuid.uuid4().hex[:8]}",
        "merchant_id": merchant_id,
        "amount_minor": 5_000,
        "subaccount_type": "prepaid",
        "subaccount_id": card["details"]["account_id"],
    }
    user.ok(user.write("POST", f"/v1/wallet/holders/{user_id}/payments", used), 201)
    elsewhere = {**used, "payment_id": "pay_e2e_elsewhere", "merchant_id": "mch_wallet"}
    r = user.write("POST", f"/v1/wallet/holders/{user_id}/payments", elsewhere)
    assert r.status_code == 403 and r.json()["code"] == "prepaid_wrong_merchant", r.text

    # --- 4. withdrawal to the verified card, paid out by settlement at the bank sandbox -----------------------
    bank = httpx.post(
        f"{platform.url('bank')}/control/accounts",
        json={"account_no": CARD, "account_name": NAME, "status": "open"},
        timeout=10,
    )
    assert bank.status_code in (200, 201), bank.text
    fund_escrow(admin, 100_000)  # the channel settled the top-up into the escrow account (§3.5)
    withdrawal = user.ok(
        user.write(
            "POST", f"/v1/wallet/holders/{user_id}/withdrawals", {"withdrawal_id": "wd_e2e_1", "amount_minor": 30_000}
        ),
        201,
    )
    assert withdrawal["status"] == "pending"
    assert withdrawal["details"]["bank_card"]["number"] == "6222***********2444"  # masked for the user
    done = eventually(
        lambda: (o := user.ok(user.get(f"/v1/wallet/operations/{withdrawal['id']}")))["status"] != "pending" and o,
        "settlement to pay the withdrawal out and post the hold",
    )
    assert done["status"] == "posted", done
    r = user.write("POST", f"/v1/wallet/operations/{withdrawal['id']}/void")
    assert r.status_code == 403, r.text  # only settlement finishes a hold

    # --- 5. BNPL: the platform grants the line and bills; the user spends on it and repays ------------------
    r = user.write("PUT", f"/v1/wallet/holders/{user_id}/credit-line", {"limit_minor": 50_000})
    assert r.status_code == 403, r.text
    admin.ok(admin.write("PUT", f"/v1/wallet/holders/{user_id}/credit-line", {"limit_minor": 50_000}))
    bnpl = {
        "payment_id": f"pay_e2e_{uuid.uuid4().hex[:8]}",
        "merchant_id": merchant_id,
        "amount_minor": 8_000,
        "subaccount_type": "credit",
    }
    user.ok(user.write("POST", f"/v1/wallet/holders/{user_id}/payments", bnpl), 201)
    bill = admin.ok(admin.write("POST", f"/v1/wallet/holders/{user_id}/bills", {"period": "202611"}), 201)
    assert (bill["amount_due_minor"], bill["status"]) == (8_000, "open")
    repayments = f"/v1/wallet/bills/{bill['id']}/repayments"
    r = user.write("POST", repayments, {"repayment_id": "rp_big", "amount_minor": 9_000})
    assert r.status_code == 422 and r.json()["code"] == "repayment_too_large", r.text
    user.ok(
        user.write(
            "POST", f"/v1/wallet/bills/{bill['id']}/repayments", {"repayment_id": "rp_e2e_1", "amount_minor": 8_000}
        ),
        201,
    )
    assert user.ok(user.get(f"/v1/wallet/bills/{bill['id']}"))["status"] == "paid"

    # --- 6. My Wallet shows all of it; the merchant sees its balances -----------------------------------------
    view = user.ok(user.get(f"/v1/wallet/holders/{user_id}/my-wallet", recent_limit=20))
    subs = {(s["subaccount_type"], s["merchant_id"]): s for s in view["subaccounts"]}
    spent = 12_000 + 20_000 + 30_000 + 8_000  # payment, card bought, withdrawn, repaid
    assert subs[("balance", None)]["balances"]["posted_balance_minor"] == 100_000 - spent
    assert subs[("prepaid", merchant_id)]["balances"]["posted_balance_minor"] == 20_000 - 5_000
    assert view["credit"] == {
        "account_id": view["credit"]["account_id"],
        "limit_minor": 50_000,
        "owed_minor": 0,
        "available_minor": 50_000,
    }
    assert [b["status"] for b in view["bills"]] == ["paid"]
    assert (view["holder"]["kyc_status"], view["holder"]["bank_card_masked"]) == ("verified", "6222***********2444")
    operations = {item["operation"] for item in view["recent"]}
    assert {"top_up", "payment", "prepaid_purchase", "withdrawal", "repayment"} <= operations, operations
    r = user.get(f"/v1/wallet/holders/{platform.keys['user_id']}/my-wallet")
    assert r.status_code == 403, r.text  # the demo user's wallet is not this user's

    after = admin.ok(admin.get(balances, livemode="true"))
    assert after["pending_minor"] - before["pending_minor"] == 12_000 + 5_000 + 8_000
    merchant.request("GET", balances)  # its own balances (the test book): allowed
    with pytest.raises(APIError) as refused:  # another merchant's balances: never
        merchant.request("GET", "/v1/wallet/merchants/mch_wallet/balances")
    assert refused.value.status == 403


def balance(user: Gateway, user_id: str) -> int:
    view = user.ok(user.get(f"/v1/wallet/holders/{user_id}/my-wallet"))
    return int(
        next(s for s in view["subaccounts"] if s["subaccount_type"] == "balance")["balances"]["posted_balance_minor"]
    )


def fund_escrow(admin: Gateway, amount_minor: int) -> None:
    """Stands for settlement's §3.5 channel settlement (Dr 1102 escrow_bank; Cr 1101 channel_clearing), posted
    by the platform through the gateway, with the chart keys and bodies every service uses."""
    escrow = admin.ok(
        admin.write(
            "POST",
            "/v1/accounts",
            {
                "holder_id": "platform",
                "currency": "CNY",
                "kind": "escrow_bank",
                "code": "1102",
                "flags": {"credits_must_not_exceed_debits": True},
                "idempotency_key": "chart:escrow_bank:platform:CNY",
            },
        )
    )
    clearing = admin.ok(
        admin.write(
            "POST",
            "/v1/accounts",
            {
                "holder_id": "platform",
                "currency": "CNY",
                "kind": "channel_clearing",
                "code": "1101",
                "metadata": {"channel": "wechatpay"},
                "idempotency_key": "chart:channel_clearing:platform:CNY:wechatpay",
            },
        )
    )
    admin.ok(
        admin.write(
            "POST",
            "/v1/transfers",
            {
                "source": "settlement",
                "idempotency_key": f"stl_e2e_{uuid.uuid4().hex[:8]}:channel",
                "postings": [
                    {"account_id": escrow["id"], "direction": "debit", "amount_minor": amount_minor, "currency": "CNY"},
                    {
                        "account_id": clearing["id"],
                        "direction": "credit",
                        "amount_minor": amount_minor,
                        "currency": "CNY",
                    },
                ],
            },
        ),
        201,
    )
