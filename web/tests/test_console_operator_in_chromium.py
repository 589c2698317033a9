"""The operator console in a real browser: Debian's Chromium on the real platform (the launcher on free ports) and
the real web process, through the gateway's one public origin (docs/web.md).

Prepared through the platform's API as its back office would: two operators invited (operations-grade super admin
and support), a merchant fee rate, a WeChat Pay payment paid at the sandbox whose bill the sandbox is told to
misstate, and the day reconciled, which leaves the mismatch in the exceptions pool. Then, on pages: the operator
accepts the invitation with an authenticator (TOTP), signs out and signs in again with a fresh code, changes the
fee rate (the audit log shows the rate before and after), simulates a route and sees why each route was kept or
dropped, asks the channel again about the exception and resolves it with a reason. The support operator sees
merchants but no rate form, and a rate change posted directly with their own CSRF token is refused (403), the rate
unchanged. axe-core finds no serious or critical violation on any page; screenshots in `.artifacts/web/`.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from libs.common.services import REPO_ROOT
from web.console import REGISTRY
from web.pages import console_operator  # noqa: F401  (declares the operator routes into REGISTRY)
from web.tests.console_browserless import Browserless, csrf_of
from web.tests.test_console_unit import documented_matrix
from web.tests.test_wallet_in_chromium import (  # one platform per module: these fixtures are module-scoped
    STEP_TIMEOUT_MS,
    Platform,
    _write,
    browser,
    check_accessibility,
    eventually,
    platform,
    reload_until,
)

sys.path.insert(0, str(REPO_ROOT / "sdk" / "python"))  # the Python SDK, as the checkout's browser test uses it
from juhe_sdk import Client

pytestmark = pytest.mark.e2e
__all__ = ["browser", "platform"]
PASSWORD = "correct horse battery staple 42"
MCHID = "1900000109"  # the demo merchant's WeChat Pay account (deploy/launcher/seed.py)
ORDER_MINOR = 1_234
TOTP_STEP_SECONDS = 30


def _read(platform: Platform, path: str, **params: Any) -> Any:
    r = httpx.get(platform.gateway + path, params=params, headers=platform.admin, timeout=30)
    assert r.status_code == 200, f"GET {path}: {r.text}"
    return r.json()


def _invite(platform: Platform, role: str) -> dict[str, Any]:
    email = f"{role}-{uuid.uuid4().hex[:6]}@ops.juhe.test"
    return dict(
        _write(
            platform.gateway,
            platform.admin,
            "POST",
            "/v1/platform/staff",
            {"kind": "operator", "email": email, "role": role, "name": role.title()},
        )
    )


def _merchant_rate(platform: Platform) -> dict[str, Any]:
    """A merchant-specific rate on the route the demo merchant's WeChat payments take (created if missing)."""
    asked = {"merchant_id": platform.merchant_id, "amount_minor": 10_000, "scene": "native_qr", "methods": "wechat"}
    last: dict[str, Any] = {}

    def chosen() -> Any:  # the seed's routes, contracts and rates are in place (bounded poll, not a fixed wait)
        last.update(_read(platform, "/v1/routing-simulations", **asked))
        return last["chosen"]

    route_id = eventually(chosen, f"a route for the demo merchant: {last}", seconds=90)["route_id"]
    found = _read(platform, "/v1/fee-rates", merchant_id=platform.merchant_id, route_id=route_id)["data"]
    open_ended = [r for r in found if r["valid_until"] is None]
    if open_ended:
        return dict(open_ended[0])
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    body = {"route_id": route_id, "rate_bps": 30, "merchant_id": platform.merchant_id, "valid_from": start}
    return dict(_write(platform.gateway, platform.admin, "POST", "/v1/fee-rates", body))


def _an_exception(platform: Platform) -> dict[str, Any]:
    """A paid WeChat payment whose bill line the channel misstates, reconciled: one amount mismatch in the pool."""
    merchant = Client(platform.gateway, key_id=platform.keys["key_id"], secret=platform.keys["secret"])
    payment = merchant.payments.create(
        merchant_order_no=f"ops-{uuid.uuid4().hex[:12]}",
        amount_minor=ORDER_MINOR,
        currency="CNY",
        description="Operator test",
        scene="native_qr",
        preferred_channels=["wechatpay"],
    )
    out_trade_no = payment["attempts"][-1]["out_trade_no"]
    pay_url = ((payment.get("payer_action") or {}).get("channel_data") or {}).get("sandbox_pay_url") or ""
    mchid = dict(parse_qsl(urlsplit(pay_url).query)).get("mchid", MCHID)
    paid = httpx.post(
        f"{platform.sandboxes['wechatpay']}/control/orders/{out_trade_no}/approve", params={"mchid": mchid}, timeout=30
    )
    assert paid.status_code == 200, paid.text
    eventually(lambda: merchant.payments.retrieve(payment["id"])["status"] == "succeeded", "the payment to succeed")

    def recorded() -> bool:
        r = httpx.get(f"{platform.gateway}/v1/settlement/payments/{payment['id']}", headers=platform.admin, timeout=30)
        return r.status_code == 200 and r.json()["status"] == "succeeded"

    eventually(recorded, "settlement to record the payment")
    bill_date = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    misstated = {"kind": "change_amount", "out_trade_no": out_trade_no, "amount_minor": ORDER_MINOR - 1, "mchid": mchid}
    told = httpx.post(
        f"{platform.sandboxes['wechatpay']}/control/bills/{bill_date}/discrepancies", json=misstated, timeout=30
    )
    assert told.status_code in (200, 201), told.text
    run = {"channel": "wechatpay", "merchant_id": platform.merchant_id, "bill_date": bill_date}
    assert (
        _write(platform.gateway, platform.admin, "POST", "/v1/settlement/reconciliations", run)["status"] == "finished"
    )
    pool = _read(platform, "/v1/settlement/reconciliation-exceptions", merchant_id=platform.merchant_id, limit=200)
    [item] = [i for i in pool["data"] if i["payment_id"] == payment["id"]]
    assert item["outcome"] == "amount_mismatch" and item["state"] == "open"
    return dict(item)


@pytest.fixture(scope="module")
def prepared(platform: Platform) -> dict[str, Any]:
    return {
        "operator": _invite(platform, "super_admin"),
        "support": _invite(platform, "support"),
        "rate": _merchant_rate(platform),
        "item": _an_exception(platform),
    }


def _context(browser: Browser, platform: Platform) -> BrowserContext:
    """Pages are opened by path on the gateway's origin (the one public address)."""
    context = browser.new_context(base_url=platform.gateway, locale="en-US", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    return context


def _accept(page: Page, invitation: dict[str, Any], name: str) -> str:
    """Accept an operator invitation: password and the authenticator (TOTP) set up on the page; the code used."""
    link = urlsplit(invitation["url"])  # opened on the gateway's origin, whatever public address it was minted with
    page.goto(f"{link.path}?{link.query}&lang=en")
    check_accessibility(page, f"40-console-{name}-invitation-en")
    secret = page.locator("code").first.inner_text().strip()
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("New password again").fill(PASSWORD)
    used = pyotp.TOTP(secret).now()
    page.get_by_label("Authenticator code").fill(used)
    page.get_by_role("button", name="Save password").click()
    page.wait_for_url(re.compile(r"/console/"))
    if page.locator("#recovery-codes").count():  # shown once, right after TOTP is set up
        page.get_by_role("link", name="Continue").click()
    expect(page.get_by_role("heading", name="Operator console", level=1)).to_be_visible()
    return secret + ":" + used


def _sign_in_with_a_fresh_code(page: Page, email: str, secret_and_used: str) -> None:
    secret, used = secret_and_used.split(":")
    totp = pyotp.TOTP(secret)
    # A code is good once: the next one comes with the next 30-second step (a bound, not a wait for time alone).
    eventually(lambda: totp.now() != used, "the authenticator's next code", seconds=TOTP_STEP_SECONDS + 5)
    page.goto("/console/sign-in?lang=en")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Code", exact=True).fill(totp.now())
    check_accessibility(page, "41-console-sign-in-code-en")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Operator console", level=1)).to_be_visible()


# ---- onboarding, the held KYC check, special rates, the ledger as of a time ----------------------------------------
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# the example catalogue's programme for a company with MCC 5812 on Alipay (docs/special-rates.md)
CANTEEN = "ali_canteen"


def _uscc() -> str:
    """A unified social credit code with its right check character (GB 32100), new on every call (one ledger holder
    per licence)."""
    body = "91330100" + "".join(secrets.choice("0123456789") for _ in range(9))
    total = sum(USCC_ALPHABET.index(c) * pow(3, i, 31) for i, c in enumerate(body))
    return body + USCC_ALPHABET[(31 - total % 31) % 31]


def _identity_rules(platform: Platform, **rules: Any) -> None:
    told = httpx.put(f"{platform.sandboxes['identity']}/control/rules", json=rules, timeout=30)
    assert told.status_code == 200, told.text


def _onboard_a_held_merchant_and_activate_it(page: Page, platform: Platform) -> dict[str, str]:
    """On the console's form, a tea house taking Alipay with its own app at the sandbox; the identity provider holds
    its KYC check (its licence is on hold), so it waits in the KYC review queue; the operator approves it there and
    the onboarding runs on to active. Its credentials are shown once."""
    app = httpx.post(f"{platform.sandboxes['alipay']}/control/apps", json={}, timeout=30).json()
    config = {
        "gateway_url": f"{platform.sandboxes['alipay']}/gateway.do",
        "app_id": app["app_id"],
        "app_private_key_pem": app["app_private_key_pem"],
        "alipay_public_key_pem": app["alipay_public_key_pem"],
        "seller_id": app["seller_id"],
    }
    licence, merchant_id = _uscc(), f"mch_tea{uuid.uuid4().hex[:10]}"
    _identity_rules(platform, hold_documents=[licence])
    try:
        page.goto("/console/operator/onboarding")
        fields = {
            "Legal name (as on the licence)": "杭州茶馆有限公司",
            "Merchant ID (optional: generated)": merchant_id,
            "Industry code (MCC)": "5812",
            "Unified social credit code (not for an individual)": licence,
            "Representative's name": "张三",
            "Representative's ID number": "11010519491231002X",
            "Contact name": "李四",
            "Contact e-mail": "ops@tea.example",
            "Contact phone": "+8613800138000",
            "Account name": "杭州茶馆有限公司",
            "Account number": "6222021234567890",
            "Bank": "ICBC Hangzhou",
            "Platform fee (basis points)": "30",
            "Route": "ali_direct",
            "The merchant's ID at the channel": app["seller_id"],
            "Webhook URL (optional)": f"{platform.gateway}/tea-house-webhooks",
        }
        for label, value in fields.items():
            page.get_by_label(label, exact=True).fill(value)
        page.get_by_label("Entity type").select_option("company")
        page.get_by_label("Channel", exact=True).select_option("alipay")
        page.get_by_label(re.compile("^Channel configuration")).fill(json.dumps(config))
        check_accessibility(page, "57-operator-onboarding-en")
        page.get_by_role("button", name="Onboard", exact=True).click()
        expect(page.locator("#onboarding-status")).to_have_attribute("data-status", "processing")
        expect(page.locator("tr[data-step='kyc']")).to_contain_text("held for review")
        key = {
            "key_id": page.locator("#api-key-id").inner_text(),
            "secret": page.locator("#api-key-secret").inner_text(),
        }
        onboarding_id = page.locator("#onboarding-status").get_attribute("data-onboarding") or ""

        # The review queue: the held check, approved; the onboarding runs on and the merchant is active.
        page.goto("/console/operator/kyc")
        held = page.locator(f"#kyc-held tr[data-onboarding='{onboarding_id}']")
        expect(held).to_contain_text(merchant_id)
        check_accessibility(page, "56-operator-kyc-en")
        held.get_by_role("button", name=f"Approve the KYC check of {merchant_id}").click()
        expect(page.locator("#status")).to_contain_text("KYC approved")
        assert "api-key-secret" not in page.content()  # the secrets were shown once, on the creating answer only
    finally:
        _identity_rules(platform)
    reload_until(page, "#onboarding-status", "active", "the onboarding to be active", seconds=60)
    check_accessibility(page, "58-operator-onboarding-active-en")
    return {"merchant_id": merchant_id, "onboarding_id": onboarding_id, **key}


def _a_held_check_rejected_with_a_reason(page: Page, platform: Platform) -> None:
    """Another onboarding (the platform's own API call) whose check is held, rejected in the queue with a reason: its
    KYC step is refused with the reviewer's reason and it moves to the refused onboardings (nothing further ran)."""
    licence = _uscc()
    body = {
        "legal_name": "杭州面馆有限公司",
        "entity_type": "company",
        "industry_code": "5812",
        "business_licence_number": licence,
        "webhook_url": f"{platform.gateway}/noodle-house-webhooks",
        "legal_representative": {"name": "王五", "id_number": "11010519491231002X"},
        "contact": {"name": "王五", "email": "ops@noodle.example", "phone": "13800138001"},
        "settlement_account": {
            "account_name": "杭州面馆有限公司",
            "account_number": "6222021234567891",
            "bank_name": "ICBC Hangzhou",
        },
        "channels": [
            {
                "channel": "alipay",
                "route_id": "ali_direct",
                "sub_merchant_id": "2088000000000001",
                "config": {"app_id": "never-used"},
            }
        ],
    }
    _identity_rules(platform, hold_documents=[licence])
    try:
        onboarding = _write(platform.gateway, platform.admin, "POST", "/v1/platform/merchant-onboardings", body)
    finally:
        _identity_rules(platform)
    page.goto("/console/operator/kyc")
    held = page.locator(f"#kyc-held tr[data-onboarding='{onboarding['onboarding_id']}']")
    held.get_by_label("Reason").fill("Licence photo does not match the register")
    held.get_by_role("button", name=re.compile("^Reject the KYC check of")).click()
    expect(page.locator("#status")).to_contain_text("KYC rejected")
    expect(page.locator("#onboarding-status")).to_have_attribute("data-status", "rejected")
    expect(page.locator("tr[data-step='kyc']")).to_contain_text("Licence photo does not match the register")
    assert (
        _read(platform, f"/v1/platform/merchant-onboardings/{onboarding['onboarding_id']}")["steps"]["ledger"]["status"]
        == "pending"
    )


def _the_merchant_takes_a_payment(platform: Platform, key: dict[str, str]) -> None:
    merchant = Client(platform.gateway, key_id=key["key_id"], secret=key["secret"])
    payment = merchant.payments.create(
        merchant_order_no=f"tea-{uuid.uuid4().hex[:12]}",
        amount_minor=ORDER_MINOR,
        currency="CNY",
        description="Longjing",
        scene="native_qr",
        preferred_channels=["alipay"],
    )
    out_trade_no = payment["attempts"][-1]["out_trade_no"]
    paid = httpx.post(f"{platform.sandboxes['alipay']}/control/trades/{out_trade_no}/approve", timeout=30)
    assert paid.status_code == 200, paid.text
    eventually(lambda: merchant.payments.retrieve(payment["id"])["status"] == "succeeded", "the tea house's payment")


def _a_special_rate_approved_shows_in_the_routing_decision(page: Page, merchant_id: str) -> None:
    """Eligible from the onboarding's data (a company, MCC 5812): the canteen programme applied for with its
    documents, submitted, approved from now; the simulator's Alipay route then quotes it."""
    page.goto(f"/console/operator/special-rates?merchant_id={merchant_id}")
    expect(page.locator("#merchant-profile")).to_contain_text("5812")
    row = page.locator(f"tr[data-programme='{CANTEEN}']")
    expect(row).to_have_attribute("data-eligible", "yes")
    for box in row.locator("input[type=checkbox]").all():
        box.check()
    row.get_by_role("button", name=f"Start an application {CANTEEN}").click()
    expect(page.locator("#status")).to_contain_text("Application started")
    page.locator("[data-application][data-status='draft']").get_by_role("button", name=re.compile("^Submit")).click()
    expect(page.locator("#status")).to_contain_text("Application submitted")
    page.locator("[data-application][data-status='submitted']").get_by_role(
        "button", name=re.compile("^Approve")
    ).click()
    expect(page.locator("#status")).to_contain_text("Application approved")
    expect(page.locator("[data-application][data-status='approved']")).to_contain_text("fr_")
    check_accessibility(page, "59-operator-special-rates-en")
    page.goto(f"/console/operator/routing/simulate?merchant_id={merchant_id}&amount=100&methods=alipay")
    expect(page.locator("[data-chosen]")).to_have_attribute("data-chosen", "ali_direct")
    expect(page.locator("#simulation")).to_contain_text(f"special rate {CANTEEN}")
    # The merchant's contract on that route switched off on its page (routing's versioned write), then on again.
    page.goto(f"/console/operator/merchants?merchant_id={merchant_id}")
    page.get_by_role("button", name="Disable ali_direct").click()
    expect(page.locator("#status")).to_contain_text("The contract is changed")
    expect(page.locator("tr[data-contract='ali_direct']")).to_contain_text("No")
    page.get_by_role("button", name="Enable ali_direct").click()
    expect(page.locator("tr[data-contract='ali_direct']")).to_contain_text("Yes")
    # Its Alipay configuration switched off and on (the cashier's PATCH by version: no secret passes the page).
    channel_row = page.locator("tr[data-channel^='alipay-']")
    mode = str(channel_row.get_attribute("data-channel")).split("-", 1)[1]
    page.get_by_role("button", name=f"Disable alipay {mode}").click()
    expect(page.locator("#status")).to_contain_text("The channel configuration is changed")
    expect(channel_row.locator(".channel-enabled")).to_have_text("No")
    page.get_by_role("button", name=f"Enable alipay {mode}").click()
    expect(channel_row.locator(".channel-enabled")).to_have_text("Yes")
    page.goto("/console/operator/audit")
    expect(page.locator("main")).to_contain_text("channel.disabled")


def _a_balance_as_of_yesterday_differs_from_now(page: Page, platform: Platform) -> None:
    """The demo merchant's account that today's payment posted to: as of this time yesterday (typed as a China
    time) the page shows the ledger's balance then, which is not the balance now."""
    yesterday = (datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(days=1)).replace(second=0, microsecond=0)
    accounts = _read(platform, "/v1/accounts", holder_id=platform.merchant_id)["data"]

    def moved(account: dict[str, Any]) -> bool:
        path = f"/v1/accounts/{account['id']}/balance"
        return bool(_read(platform, path)["balances"] != _read(platform, path, as_of=yesterday.isoformat())["balances"])

    account_id = next((a["id"] for a in accounts if moved(a)), None)
    assert account_id, f"no account of {platform.merchant_id} moved since yesterday: {accounts}"
    page.goto("/console/operator/ledger")
    page.get_by_label("Account ID").fill(account_id)
    page.get_by_label(re.compile("^Balance as of")).fill(yesterday.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Look up").click()
    expect(page.locator("#balance-when")).to_have_attribute("data-as-of", yesterday.isoformat())
    then = page.locator("#balance").inner_text()
    check_accessibility(page, "50-operator-ledger-en")
    page.goto(f"/console/operator/ledger?account_id={account_id}")
    expect(page.locator("#balance-when")).to_have_attribute("data-as-of", "now")
    assert page.locator("#balance").inner_text() != then


def test_an_operator_changes_a_rate_simulates_and_resolves_an_exception(
    platform: Platform, browser: Browser, prepared: dict[str, Any]
) -> None:
    page = (context := _context(browser, platform)).new_page()
    operator = prepared["operator"]
    used = _accept(page, operator, "operator")
    page.get_by_role("button", name="Sign out").click()
    _sign_in_with_a_fresh_code(page, operator["email"], used)
    check_accessibility(page, "42-operator-overview-en")

    # A fee rate change: the old rate ends, the new one starts; the audit log has before and after.
    rate = prepared["rate"]
    page.goto(f"/console/operator/merchants?merchant_id={platform.merchant_id}")
    check_accessibility(page, "43-operator-merchant-en")
    form = page.locator(f"form[action='/console/operator/fee-rates/{rate['rate_id']}/change']")
    form.get_by_label("New rate (basis points)").fill(str(rate["rate_bps"] - 5))
    form.get_by_role("button", name="Change rate").click()
    expect(page.locator("#status")).to_contain_text("The new rate is saved")
    ended = _read(platform, f"/v1/fee-rates/{rate['rate_id']}")
    assert ended["valid_until"] is not None
    # Suspension: the merchant's standing changes on the gateway, then back; both are in the audit log below.
    page.get_by_label("Reason").fill("Console test: KYC document expired")
    page.get_by_role("button", name="Suspend the merchant").click()
    expect(page.locator("#status")).to_contain_text("The merchant is suspended")
    expect(page.locator("#merchant-standing")).to_contain_text("Suspended: Console test: KYC document expired")
    check_accessibility(page, "55-operator-merchant-suspended-en")
    page.get_by_label("Reason").fill("Console test: document renewed")
    page.get_by_role("button", name="Resume the merchant").click()
    expect(page.locator("#status")).to_contain_text("The merchant is active again")
    page.goto("/console/operator/audit")  # an operator's write is recorded under the operator, not a merchant
    expect(page.locator("tr[data-action='merchant.suspended']").first).to_contain_text("suspended=True")
    entry = page.locator("tr[data-action='fee_rate.changed']").first
    expect(entry.locator(".before")).to_contain_text(f"rate_bps={rate['rate_bps']}")
    expect(entry.locator(".after")).to_contain_text(f"rate_bps={rate['rate_bps'] - 5}")
    expect(entry).to_contain_text(operator["email"])
    check_accessibility(page, "44-operator-audit-en")

    # The exceptions pool: the mismatch, re-queried at the channel, resolved with a reason.
    item = prepared["item"]
    page.goto("/console/operator/reconciliation")
    check_accessibility(page, "47-operator-reconciliation-en")
    page.get_by_role("link", name=re.compile(f"#{item['item_id']} ")).click()
    page.get_by_role("button", name="Ask the channel again").click()
    expect(page.locator("[data-requery]")).to_have_attribute("data-requery", "succeeded")
    page.get_by_label("Why it is resolved").fill(
        "Channel bill misstated the amount; the channel's query agrees with us"
    )
    page.get_by_role("button", name="Mark resolved").click()
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "resolved")
    check_accessibility(page, "48-operator-exception-resolved-en")
    resolved = _read(platform, f"/v1/settlement/reconciliation-exceptions/{item['item_id']}")
    assert resolved["resolved_by"] == operator["email"]
    assert [a["action"] for a in resolved["actions"]] == ["requeried", "resolved"]

    _a_balance_as_of_yesterday_differs_from_now(page, platform)
    for path, name in (
        ("/console/operator/settlement", "49-operator-settlement-en"),
        ("/console/operator/health", "51-operator-health-en"),
    ):
        page.goto(path)
        check_accessibility(page, name)
    # The settlement calendar: the demo merchant's cycle and, per day of this month, when its payments settle.
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    page.goto(f"/console/operator/settlement/calendar?holder_id={platform.merchant_id}")
    expect(page.locator("#cycle")).to_contain_text(platform.merchant_id)
    expect(page.locator(f"#day-{today.isoformat()}")).to_contain_text("Settles")
    check_accessibility(page, "53-operator-settlement-calendar-en")
    # The savings report: platform-wide figures of routing's special-rate projection (a chart when a merchant has any).
    page.goto("/console/operator/savings")
    expect(page.locator("#savings-totals")).to_be_visible()
    check_accessibility(page, "54-operator-savings-en")
    # Onboarding in the console, its held KYC check reviewed and the merchant activated; it then takes a payment;
    # a special rate approved for it is what routing quotes; its wallet holder (the ledger's) with KYC and accounts.
    tea = _onboard_a_held_merchant_and_activate_it(page, platform)
    _a_held_check_rejected_with_a_reason(page, platform)
    _the_merchant_takes_a_payment(platform, tea)
    _a_special_rate_approved_shows_in_the_routing_decision(page, tea["merchant_id"])
    page.goto(f"/console/operator/wallets?holder_id={tea['merchant_id']}")
    expect(page.get_by_role("heading", name=re.compile(tea["merchant_id"]))).to_be_visible()
    expect(page.locator("#subaccounts")).to_be_visible()
    check_accessibility(page, "60-operator-wallet-holder-en")
    pending = page.locator("#subaccounts tr", has_text="merchant_pending")
    account_id = pending.get_attribute("data-account")
    pending.get_by_role("button", name="Freeze merchant_pending").click()
    expect(page.locator("#status")).to_contain_text("Frozen")
    assert _read(platform, f"/v1/accounts/{account_id}")["status"] == "frozen"
    page.locator("#subaccounts tr", has_text="merchant_pending").get_by_role(
        "button", name=re.compile("^Unfreeze")
    ).click()
    expect(page.locator("#status")).to_contain_text("Unfrozen")
    assert _read(platform, f"/v1/accounts/{account_id}")["status"] == "active"
    page.goto("/console/operator/audit")
    expect(page.locator("tr[data-action='onboarding.kyc_approved']").first).to_contain_text(operator["email"])
    expect(page.locator("tr[data-action='special_rate.approved']").first).to_be_visible()
    page.goto("/console/operator/health")
    # Health through the operator's own session: every service's row and the consumer groups' lag, from the gateway.
    expect(page.get_by_role("row", name=re.compile(r"^settlement Yes "))).to_be_visible()
    expect(page.get_by_role("heading", name="Consumer lag")).to_be_visible()
    expect(page.get_by_text("juhe-settlement", exact=True)).to_be_visible()
    page.goto("/console/operator/routing")
    expect(page.locator("svg.chart")).to_be_visible()
    check_accessibility(page, "46-operator-routing-en")

    page.goto("/console/operator/health?lang=zh_CN")
    expect(page.get_by_role("heading", name="平台健康", level=1)).to_be_visible()
    check_accessibility(page, "52-operator-health-zh")

    # The simulator: where would a payment go, and why each route was kept or dropped.
    page.goto("/console/operator/routing/simulate?lang=en")  # back to English after the Chinese page
    page.get_by_label("Merchant ID").fill(platform.merchant_id)
    page.get_by_label("Amount (yuan)").fill("100")
    page.get_by_role("button", name="Simulate").click()
    expect(page.locator("#simulation, .err[role=alert]").first).to_be_visible()
    assert page.locator(".err[role=alert]").count() == 0, page.locator(".err[role=alert]").inner_text()
    expect(page.locator("[data-chosen]")).to_have_attribute("data-chosen", rate["route_id"])
    expect(page.locator("#simulation")).to_contain_text("A simulation changes nothing.")
    check_accessibility(page, "45-operator-simulator-en")
    context.close()


def test_a_support_operator_cannot_change_a_rate_even_by_posting_directly(
    platform: Platform, browser: Browser, prepared: dict[str, Any]
) -> None:
    page = (context := _context(browser, platform)).new_page()
    _accept(page, prepared["support"], "support")
    page.goto(f"/console/operator/merchants?merchant_id={platform.merchant_id}")
    expect(page.get_by_role("heading", name=platform.merchant_id)).to_be_visible()
    assert page.get_by_role("button", name="Change rate").count() == 0
    csrf = page.locator("form[action='/console/sign-out'] input[name='csrf']").get_attribute("value")
    before = _read(platform, "/v1/fee-rates", merchant_id=platform.merchant_id)["data"]
    target = before[-1]["rate_id"]
    forged = page.request.post(
        f"/console/operator/fee-rates/{target}/change",
        form={"csrf": csrf or "", "rate_bps": "1", "request_id": uuid.uuid4().hex[:24]},
    )
    assert forged.status == 403
    page.goto(f"/console/operator/routing/simulate?merchant_id={platform.merchant_id}&amount=1")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    assert _read(platform, "/v1/fee-rates", merchant_id=platform.merchant_id)["data"] == before
    # Nor onboard a merchant, decide a KYC check or approve a special rate, whatever is posted: 403, nothing made.
    onboardings = _read(platform, "/v1/platform/merchant-onboardings", limit=100)["data"]
    applications = _read(platform, "/v1/special-rate-applications", limit=100)["data"]
    for path, form in (
        ("/console/operator/onboarding", {"legal_name": "Forged Ltd", "entity_type": "company"}),
        ("/console/operator/kyc/onb_" + "0" * 32 + "/decision", {"decision": "approve"}),
        (
            "/console/operator/special-rates/applications",
            {"merchant_id": platform.merchant_id, "programme_id": CANTEEN},
        ),
        ("/console/operator/special-rates/applications/spa_nobody/approve", {"merchant_id": platform.merchant_id}),
    ):
        assert page.request.post(path, form={"csrf": csrf or "", **form}, max_redirects=0).status == 403, path
    assert _read(platform, "/v1/platform/merchant-onboardings", limit=100)["data"] == onboardings
    assert _read(platform, "/v1/special-rate-applications", limit=100)["data"] == applications
    context.close()


# ---- the permission matrix of the operator console ------------------------------------------------------------
def _operator_signed_in(platform: Platform, role: str) -> Browserless:
    """An operator of `role` who accepted their invitation on the page (password and TOTP): signed in."""
    client = Browserless(platform.gateway)
    link = urlsplit(_invite(platform, role)["url"])
    page = client.request("GET", f"{link.path}?{link.query}")
    secret = re.search(r"<code>([A-Z2-7]+)</code>", page.text)
    assert secret, page.text[:500]
    token = dict(parse_qsl(link.query))["token"]
    form = {
        "csrf": csrf_of(page.text),
        "token": token,
        "password": PASSWORD,
        "password_again": PASSWORD,
        "totp_code": pyotp.TOTP(secret.group(1)).now(),
    }
    accepted = client.request("POST", "/console/invitation", data=form)
    assert accepted.status_code in (200, 303), accepted.text[:500]
    return client


def test_every_operator_route_for_every_platform_role_matches_the_documented_matrix(platform: Platform) -> None:
    """Each operator console route × each platform role: allowed (not 403) exactly when docs/consoles.md's matrix
    gives the role the route's permission; never 401 or 500. Ids in paths are ones that do not exist. Pages are asked
    about the demo merchant, so each one calls the services through the gateway as the operator: a page the console
    lets a role open but whose calls the gateway refuses that role is a 403 too, and fails here."""
    matrix = documented_matrix("operator")
    about = {"merchant_id": platform.merchant_id, "holder_id": platform.merchant_id, "amount": "1.00"}
    rules = [r for r in REGISTRY.values() if r.console == "operator"]
    assert {r.path for r in rules} >= {"/console/operator/reconciliation/{item_id}/resolve", "/console/operator/health"}
    assert all(any(r.permission in s for s in matrix.values()) for r in rules), "a permission no role has"
    for role, permissions in matrix.items():
        client = _operator_signed_in(platform, role)
        try:
            csrf = csrf_of(client.request("GET", "/console/account").text)
            for rule in rules:
                path = rule.path.replace("{rate_id}", "fr_" + "0" * 32).replace("{item_id}", "999999999")
                path = path.replace("{payout_id}", "po_" + "0" * 26).replace("{merchant_id}", "mch_nobody")
                path = path.replace("{onboarding_id}", "onb_" + "0" * 32).replace("{application_id}", "spa_nobody")
                path = path.replace("{action}", "submit").replace("{route_id}", "ali_direct")
                path = path.replace("{holder_id}", platform.merchant_id).replace("{account_id}", "acc_nobody")
                data = {"csrf": csrf} if rule.method == "POST" else None
                params = about if rule.method == "GET" else None
                status = client.request(rule.method, path, data=data, params=params).status_code
                allowed = rule.permission in permissions
                assert (status != 403) == allowed and status not in (401, 500), (role, rule.method, rule.path, status)
        finally:
            client.close()
