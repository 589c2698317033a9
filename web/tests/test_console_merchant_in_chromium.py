"""The merchant console in a real browser (Debian's Chromium) on the real platform (the launcher on free ports) and
the real web process, through the gateway's one public origin; one platform for the module.

The platform's admin key creates the demo merchant's first owner (as onboarding would); then, on pages: the owner
accepts the invitation, invites a finance and a support member and sets the refund threshold; finance finds a
payment by order no., sees its timeline, downloads the statement CSV (byte for byte the API's), requests a payout
(the settlement service holds it to the settled balance), requests a refund above the threshold that only another
member may approve (maker-checker); support sees the payment but is refused payouts and API keys, and the same
requests sent directly (a forged form, a missing or another session's CSRF token, another merchant's payment in the
URL) are refused too. The permission-matrix test calls every console route as every merchant role and compares
allowed / 403 with docs/consoles.md. axe-core scans every page; screenshots in `.artifacts/web/console-*`.
"""

from __future__ import annotations

import csv
import io
import re
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from libs.common.services import REPO_ROOT
from web.console import PUBLIC, REGISTRY, SIGNED_IN, declared_routes
from web.pages import console_merchant  # noqa: F401  (declares the merchant routes into REGISTRY)
from web.tests.console_browserless import Browserless, csrf_of
from web.tests.test_console_unit import documented_matrix
from web.tests.test_wallet_in_chromium import (  # noqa: F401  (module-scoped fixtures: one platform here)
    Platform,
    _write,
    browser,
    check_accessibility,
    platform,
)

if str(REPO_ROOT / "sdk" / "python") not in sys.path:  # the SDK is its own package, used from its source folder
    sys.path.insert(0, str(REPO_ROOT / "sdk" / "python"))
from juhe_sdk import Client
from juhe_sdk.errors import AuthenticationError

pytestmark = pytest.mark.e2e
PASSWORD = "console test password 1"
THRESHOLD_YUAN = "5.00"
IDS = {
    "payment": "pay",
    "request": "crq",
    "key": "key",
    "staff": "stf",
    "delivery": "whd",
    "endpoint": "we",
    "link": "pl",
    "stock": "cps",
    "redemption": "red",
}  # path parameter → id prefix


@dataclass
class Shop:
    platform: Platform
    merchant: Client
    payments: list[dict[str, Any]] = field(default_factory=list)
    invitations: dict[str, str] = field(default_factory=dict)  # e-mail → one-time link path
    pages: dict[str, Page] = field(default_factory=dict)  # who → signed-in page


ROUTE_ID = "con_ali_pos"


def _route_barcode(p: Platform, merchant_id: str) -> None:
    """An Alipay 付款码 route and a contract for the merchant (the operator's set-up), so a payment succeeds at once."""
    route = {
        "route_id": ROUTE_ID,
        "method": "alipay",
        "kind": "direct",
        "provider": "alipay",
        "connector": "alipay",
        "config_ref": "demo/alipay",
        "scenes": ["barcode"],
    }
    rate = {"route_id": ROUTE_ID, "rate_bps": 38, "valid_from": "2026-01-01T00:00:00+08:00"}
    for method, path, body in (
        ("POST", "/v1/channel-routes", route),
        ("POST", "/v1/fee-rates", rate),
        ("PUT", f"/v1/contracts/{merchant_id}/{ROUTE_ID}", {"sub_merchant_id": f"sub_{ROUTE_ID}"}),
    ):
        r = httpx.request(
            method, p.gateway + path, json=body, timeout=30, headers={**p.admin, "Idempotency-Key": uuid.uuid4().hex}
        )
        assert r.status_code in (200, 201, 409), r.text


def _paid(shop: Shop, client: Client, amount_minor: int, **extra: Any) -> dict[str, Any]:
    code = httpx.post(shop.platform.sandboxes["alipay"] + "/control/payer-codes", json={}, timeout=10).json()
    payment = client.payments.create(
        merchant_order_no=f"con-{uuid.uuid4().hex[:12]}",
        amount_minor=amount_minor,
        currency="CNY",
        description="Console test",
        scene="payment_code",
        auth_code=code["auth_code"],
        **extra,
    )
    assert payment["status"] == "succeeded", payment
    return dict(payment)


@pytest.fixture(scope="module")
def shop(platform: Platform) -> Iterator[Shop]:  # noqa: F811
    keys = platform.keys
    merchant = Client(platform.gateway, key_id=keys["key_id"], secret=keys["secret"])
    _route_barcode(platform, platform.merchant_id)
    s = Shop(platform, merchant)
    # The third one's webhook goes to a port where nobody answers (the discard port): a delivery to resend.
    s.payments = [
        _paid(s, merchant, 1_200),
        _paid(s, merchant, 880),
        _paid(s, merchant, 1_234, notify_url="http://127.0.0.1:9/juhe-webhook"),
    ]
    owner = _write(
        platform.gateway,
        platform.admin,
        "POST",
        "/v1/platform/staff",
        {
            "kind": "merchant",
            "merchant_id": platform.merchant_id,
            "email": "owner@console.example",
            "role": "owner",
            "name": "Owner",
        },
    )
    s.invitations["owner@console.example"] = _path(owner["url"])
    yield s
    merchant.close()


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _accept(ctx: BrowserContext, shop: Shop, email: str, name: str) -> Page:
    page = ctx.new_page()
    page.goto(shop.platform.gateway + shop.invitations[email])
    page.get_by_label("Your name").fill(name)
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("New password again").fill(PASSWORD)
    page.get_by_role("button", name="Save password").click()
    expect(page.locator("#status")).to_contain_text("Signed in")
    return page


def _en(ctx: BrowserContext, shop: Shop) -> None:
    ctx.add_cookies([{"name": "juhe_lang", "value": "en", "url": shop.platform.gateway}])


def test_owner_finance_support_work_and_roles_hold(browser: Browser, shop: Shop) -> None:  # noqa: F811
    gw = shop.platform.gateway
    owner_ctx = browser.new_context()
    _en(owner_ctx, shop)
    owner = _accept(owner_ctx, shop, "owner@console.example", "Owner")
    check_accessibility(owner, "console-dashboard")
    expect(owner.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(owner.locator("svg.chart").first).to_be_visible()
    owner.get_by_role("link", name="Test payments").click()  # live and test money are never added up
    expect(owner.get_by_role("link", name="Test payments")).to_have_attribute("aria-current", "page")
    expect(owner.locator("svg.chart").first).to_be_visible()

    # The owner invites finance and support, and sets the maker-checker threshold.
    owner.get_by_role("link", name="Staff").click()
    for email, role in (("finance@console.example", "finance"), ("support@console.example", "support")):
        owner.get_by_label("E-mail", exact=True).fill(email)
        owner.locator("#invite-role").select_option(role)
        owner.get_by_role("button", name="Invite", exact=True).click()
        shop.invitations[email] = _path(owner.locator("#invitation-url").inner_text())
    check_accessibility(owner, "console-staff")
    owner.get_by_role("link", name="Settings").click()
    owner.get_by_label("Threshold (yuan)").fill(THRESHOLD_YUAN)
    owner.get_by_role("button", name="Save").click()
    expect(owner.locator("#status")).to_contain_text("Done")
    check_accessibility(owner, "console-settings")

    # Finance: finds a payment by its order no. and sees its timeline.
    finance_ctx = browser.new_context(accept_downloads=True)
    _en(finance_ctx, shop)
    finance = _accept(finance_ctx, shop, "finance@console.example", "Finance")
    paid = shop.payments[0]
    finance.goto(gw + "/console/merchant/payments")
    finance.get_by_label("Order no.").fill(paid["merchant_order_no"])
    finance.get_by_role("button", name="Search").click()
    finance.get_by_role("link", name=paid["merchant_order_no"]).click()
    expect(finance.locator("#payment-status")).to_have_text("succeeded")
    expect(finance.locator("#timeline")).to_contain_text("attempt_succeeded")
    check_accessibility(finance, "console-payment")

    # By amount, typed in yuan: exact, a range, and what is not an amount (said so, nothing searched).
    finance.goto(gw + "/console/merchant/payments")
    finance.get_by_label("Amount (yuan)", exact=True).fill("12.34")
    finance.get_by_role("button", name="Search").click()
    expect(finance.locator("#payments tbody tr")).to_have_count(1)
    expect(finance.locator("#payments")).to_contain_text(shop.payments[2]["merchant_order_no"])
    finance.get_by_label("Amount (yuan)", exact=True).fill("")
    finance.get_by_label("Amount from (yuan)").fill("8")
    finance.get_by_label("Amount to (yuan)").fill("9.00")
    finance.get_by_role("button", name="Search").click()
    expect(finance.locator("#payments tbody tr")).to_have_count(1)
    expect(finance.locator("#payments")).to_contain_text(shop.payments[1]["merchant_order_no"])
    check_accessibility(finance, "console-payments-by-amount")
    finance.get_by_label("Amount to (yuan)").fill("1.2.3")
    finance.get_by_role("button", name="Search").click()
    expect(finance.locator("#status")).to_contain_text("Enter a valid amount")
    expect(finance.locator("#payments")).to_contain_text("No payments found")

    # Self-service reconciliation of today (China time): every payment of the day agrees with the statement once
    # settlement has recorded the payments' events (polled, bounded).
    finance.get_by_role("link", name="Reconciliation").click()
    finance.get_by_label("Business day").fill(_china_today())
    finance.get_by_role("button", name="Reconcile").click()
    _eventually_visible(finance, "#no-differences")
    assert int(finance.locator("#matched").inner_text()) >= len(shop.payments)
    expect(finance.locator("#reconciliation-channels")).to_contain_text("alipay")
    check_accessibility(finance, "console-reconciliation")

    # The statement CSV is the API's, byte for byte.
    finance.get_by_role("link", name="Statements").click()
    check_accessibility(finance, "console-statements")
    with finance.expect_download() as download:
        finance.get_by_role("button", name="Download CSV").click()
    from_page = open(download.value.path(), "rb").read()  # noqa: SIM115
    from_api = shop.merchant.request_raw("GET", "/v1/statements/transactions.csv").data
    assert from_page.decode() == from_api and from_page.startswith(b"payment_id,")

    # A payout: within the settled balance only (the settlement service decides, whatever the page shows).
    finance.get_by_role("link", name="Payouts").click()
    settled = shop.merchant.request("GET", "/v1/statements/current")["balances"].get("CNY", {}).get("settled_minor", 0)
    finance.get_by_label("Amount (yuan)").fill("1.00")
    finance.get_by_label("Bank account no.").fill("6222000011112222")
    finance.get_by_label("Account name").fill("Console Shop Ltd")
    finance.get_by_role("button", name="Request payout").click()
    if settled >= 100:
        expect(finance.locator("#status")).to_contain_text("Payout requested")
    else:
        expect(finance.locator("#status")).to_contain_text("More than the settled balance")
    check_accessibility(finance, "console-payouts")

    # Maker-checker: finance asks for a refund above the threshold; it waits, finance cannot approve it, the owner can.
    finance.goto(gw + f"/console/merchant/payments/{paid['id']}")
    finance.get_by_label("Refund amount (yuan)").fill("6.00")
    finance.get_by_role("button", name="Refund", exact=True).click()
    expect(finance.locator("#status")).to_contain_text("waits for a second person")
    finance.get_by_role("link", name="Refunds").click()
    expect(finance.locator(".request-status").first).to_have_text("pending")
    finance.get_by_role("button", name="Approve").first.click()
    expect(finance.locator("#status")).to_contain_text("Another person must approve")
    check_accessibility(finance, "console-refunds")
    owner.goto(gw + "/console/merchant/refunds")
    owner.get_by_role("button", name="Approve").first.click()
    expect(owner.locator("#status")).to_contain_text("Done")
    expect(owner.locator(".request-status").first).to_have_text("executed")
    refunds = shop.merchant.request("GET", f"/v1/payments/{paid['id']}/refunds")["data"]
    assert [r["amount_minor"] for r in refunds] == [600]

    # A request approved whose refund was never made (the cashier refused or did not answer then; here a member's
    # session asked the gateway directly, below the threshold) is made from the queue, once.
    second = shop.payments[1]
    maker = _write(
        gw,
        shop.platform.admin,
        "POST",
        "/v1/platform/staff",
        {
            "kind": "merchant",
            "role": "finance",
            "merchant_id": shop.platform.merchant_id,
            "email": "maker@console.example",
        },
    )
    session = {"Authorization": f"Bearer {_redeem(gw, maker['url'])['session']['token']}"}
    asked = httpx.post(
        gw + "/v1/console/refund-requests",
        json={"payment_id": second["id"], "amount_minor": 100},
        headers=session,
        timeout=30,
    )
    assert asked.status_code == 201 and asked.json()["status"] == "approved", asked.text
    owner.goto(gw + "/console/merchant/refunds")
    row = owner.locator("#refund-requests tr", has_text=second["id"])
    row.get_by_role("button", name="Make the refund").click()
    expect(owner.locator("#status")).to_contain_text("Refund made")
    expect(owner.locator("#refund-requests tr", has_text=second["id"]).locator(".request-status")).to_have_text(
        "executed"
    )
    refunds = shop.merchant.request("GET", f"/v1/payments/{second['id']}/refunds")["data"]
    assert [r["amount_minor"] for r in refunds] == [100]

    # Support sees the payment, but payouts and API keys are "not allowed".
    support_ctx = browser.new_context()
    _en(support_ctx, shop)
    support = _accept(support_ctx, shop, "support@console.example", "Support")
    support.goto(gw + f"/console/merchant/payments/{paid['id']}")
    expect(support.locator("#payment-status")).to_have_text("succeeded")
    for path in ("/console/merchant/payouts", "/console/merchant/api-keys"):
        response = support.goto(gw + path)
        assert response is not None and response.status == 403
        expect(support.get_by_role("heading", name="Not allowed")).to_be_visible()
    check_accessibility(support, "console-refused")
    expect(support.get_by_role("link", name="Payouts")).to_have_count(0)  # not offered either

    # Support resends the webhook delivery nobody acknowledged: queued again from the start (audited below).
    hooked = shop.payments[2]
    support.goto(gw + f"/console/merchant/payments/{hooked['id']}")
    _eventually_visible(support, "#deliveries button")
    support.locator("#deliveries button").first.click()
    expect(support.locator("#status")).to_contain_text("Delivery queued again")
    delivery = shop.merchant.request("GET", f"/v1/payments/{hooked['id']}/webhook-deliveries")["data"][0]
    assert delivery["status"] in ("pending", "failed"), delivery

    # The same requests sent directly: a forged payout form with support's own token is still 403; finance's form
    # without a token, or with support's (another session's) token, is 403; nothing is paid out.
    support_csrf = _csrf(support, gw + "/console/account")
    finance_csrf = _csrf(finance, gw + "/console/account")
    form = {"amount": "1.00", "account_no": "6222000011112222", "account_name": "Evil", "merchant_id": "mch_other"}
    assert (
        support_ctx.request.post(
            gw + "/console/merchant/payouts", form={**form, "csrf": support_csrf}, max_redirects=0
        ).status
        == 403
    )
    assert (
        support_ctx.request.post(gw + "/console/merchant/api-keys", form={"csrf": support_csrf}, max_redirects=0).status
        == 403
    )
    for token in ("", support_csrf):
        r = finance_ctx.request.post(gw + "/console/merchant/payouts", form={**form, "csrf": token}, max_redirects=0)
        assert r.status == 403, token
    listed = shop.merchant.request("GET", "/v1/payouts")
    payouts = listed.get("data", listed.get("payouts", []))
    assert not any(p["account_name"] == "Evil" for p in payouts)
    assert finance_csrf != support_csrf

    # Another merchant's owner with this merchant's payment id in the URL: not found (the merchant is the session's).
    other = _write(gw, shop.platform.admin, "POST", "/v1/platform/merchants", {"name": "Other shop"})
    boss = _write(
        gw,
        shop.platform.admin,
        "POST",
        "/v1/platform/staff",
        {"kind": "merchant", "role": "owner", "merchant_id": other["merchant_id"], "email": "boss@other.example"},
    )
    _redeem(gw, boss["url"])
    stranger = _sign_in(gw, "boss@other.example")
    assert stranger.request("GET", f"/console/merchant/payments/{paid['id']}").status_code == 404
    assert paid["merchant_order_no"] not in stranger.request("GET", "/console/merchant/payments").text
    stranger.close()

    # API keys (owner): a new key's secret is shown once and signs requests; a rotation gives a new secret and the old
    # key keeps working for the overlap chosen; a revoked key is refused at once.
    owner.goto(gw + "/console/merchant/api-keys")
    owner.get_by_role("button", name="Create a key").click()
    key_id, secret = owner.locator("#new-key-id").inner_text(), owner.locator("#new-key-secret").inner_text()
    check_accessibility(owner, "console-api-keys")
    created = Client(gw, key_id=key_id, secret=secret, max_retries=0)
    assert created.request("GET", "/v1/payments", params={"limit": 1})["data"]
    owner.reload()
    assert secret not in owner.content()  # shown once
    row = owner.locator("#keys tr", has_text=key_id)
    row.get_by_role("button", name="Rotate").click()
    new_id, new_secret = owner.locator("#new-key-id").inner_text(), owner.locator("#new-key-secret").inner_text()
    rotated = Client(gw, key_id=new_id, secret=new_secret, max_retries=0)
    assert rotated.request("GET", "/v1/payments", params={"limit": 1})["data"]
    assert created.request("GET", "/v1/payments", params={"limit": 1})["data"]  # the overlap (24 h by default)
    owner.locator("#keys tr", has_text=new_id).get_by_role("button", name="Revoke").click()
    expect(owner.locator("#status")).to_contain_text("Done")
    with pytest.raises(AuthenticationError) as refused:
        rotated.request("GET", "/v1/payments", params={"limit": 1})
    assert refused.value.code == "api_key_revoked"
    for client in (created, rotated):
        client.close()

    # The audit log (owner): the invitations, the threshold, the refund decision and execution, with before/after.
    owner.goto(gw + "/console/merchant/audit")
    audit = owner.locator("#audit").inner_text()
    for action in (
        "staff.invited",
        "settings.refund_threshold_changed",
        "refund.approved",
        "refund.executed",
        "api_key.created",
        "api_key.rotated",
        "api_key.revoked",
        "webhook.resent",
    ):
        assert action in audit, action
    assert "amount_minor=600" in audit  # the refund request's record, summarised by the fields people compare
    check_accessibility(owner, "console-audit")
    for context in (owner_ctx, finance_ctx, support_ctx):
        context.close()


def _china_today() -> str:
    return datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()


def _eventually_visible(page: Page, selector: str, seconds: float = 90) -> None:
    """Reload until `selector` is on the page (what another service records from events comes a moment later);
    bounded by a deadline, never a fixed wait."""
    deadline = time.monotonic() + seconds
    while page.locator(selector).count() == 0:
        assert time.monotonic() < deadline, (
            f"{selector} not shown on {page.url} within {seconds} s: " + (page.locator("main").inner_text()[:2000])
        )
        page.wait_for_timeout(500)
        page.reload()


def _csrf(page: Page, url: str) -> str:
    page.goto(url)
    return str(page.locator("input[name=csrf]").first.get_attribute("value"))


# ---- webhooks, balances, payment links, coupons and postings (issue 16, second part) ----------------------------
def _member_page(browser: Browser, shop: Shop, role: str) -> tuple[BrowserContext, Page]:  # noqa: F811
    """A member of `role` made by the platform (as an owner's invitation would), signed in on the sign-in page."""
    gw, email = shop.platform.gateway, f"{role}.tools.{uuid.uuid4().hex[:6]}@console.example"
    made = _write(
        gw,
        shop.platform.admin,
        "POST",
        "/v1/platform/staff",
        {"kind": "merchant", "role": role, "merchant_id": shop.platform.merchant_id, "email": email},
    )
    _redeem(gw, made["url"])
    ctx = browser.new_context(accept_downloads=True)
    _en(ctx, shop)
    page = ctx.new_page()
    page.goto(gw + "/console/sign-in")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#status")).to_contain_text("Signed in")
    return ctx, page


def _endpoint(shop: Shop, endpoint_id: str) -> dict[str, Any]:
    return dict(shop.merchant.request("GET", f"/v1/webhook-endpoints/{endpoint_id}"))


def test_webhooks_balances_payment_links_coupons_and_postings(browser: Browser, shop: Shop) -> None:  # noqa: F811
    from web.i18n import money

    gw = shop.platform.gateway
    developer_ctx, developer = _member_page(browser, shop, "developer")
    support_ctx, support = _member_page(browser, shop, "support")
    finance_ctx, finance = _member_page(browser, shop, "finance")
    owner_ctx, owner = _member_page(browser, shop, "owner")

    # A developer adds an endpoint (its secret shown once) and rotates the secret (a new one, shown once; the old one
    # keeps signing for the overlap).
    developer.get_by_role("link", name="Webhooks").click()
    developer.get_by_label("URL").fill("http://127.0.0.1:9/console-hook")
    developer.get_by_label("Every event, later ones too").check()
    developer.get_by_role("button", name="Add the endpoint").click()
    endpoint_id, first = (
        developer.locator("#endpoint-id").inner_text(),
        developer.locator("#endpoint-secret").inner_text(),
    )
    assert _endpoint(shop, endpoint_id)["previous_secret_expires_at"] is None
    row = developer.locator("#endpoints tr", has_text="console-hook")
    row.get_by_role("button", name=re.compile("Rotate the secret")).click()
    expect(developer.locator("#status")).to_contain_text("Done")
    second = developer.locator("#endpoint-secret").inner_text()
    assert second and second != first
    rotated = _endpoint(shop, endpoint_id)["previous_secret_expires_at"]
    assert rotated is not None
    check_accessibility(developer, "console-webhooks")
    developer.goto(gw + "/console/merchant/webhooks")
    assert second not in developer.content()  # shown once

    # Support may not: the page is "not allowed", a forged rotation is refused, the endpoint is as it was.
    response = support.goto(gw + "/console/merchant/webhooks")
    assert response is not None and response.status == 403
    expect(support.get_by_role("heading", name="Not allowed")).to_be_visible()
    support_csrf = _csrf(support, gw + "/console/account")
    forged = support_ctx.request.post(
        gw + f"/console/merchant/webhooks/{endpoint_id}/rotate",
        form={"csrf": support_csrf, "overlap_seconds": "0"},
        max_redirects=0,
    )
    assert forged.status == 403
    assert _endpoint(shop, endpoint_id)["previous_secret_expires_at"] == rotated

    # Finance sees the three balances the ledger keeps for the merchant (read again until they agree: the ledger
    # posts the payments' events a moment after they happen).
    finance.get_by_role("link", name="Balances").click()
    finance.get_by_role("link", name="Test balances").click()  # the platform's demo key is a test key: its book
    deadline = time.monotonic() + 60
    while True:
        books = shop.merchant.request("GET", f"/v1/wallet/merchants/{shop.platform.merchant_id}/balances")
        shown = [finance.locator(f"#balance-{k}").inner_text() for k in ("pending", "settled", "in-transit")]
        wanted = [money(books[k], "CNY", "en") for k in ("pending_minor", "settled_minor", "payout_in_transit_minor")]
        if shown == wanted:
            break
        assert time.monotonic() < deadline, (shown, wanted)
        finance.reload()
    assert books["pending_minor"] > 0
    check_accessibility(finance, "console-balances")

    # A single-use payment link made in the console is paid by a payer (WeChat Pay sandbox) and shows paid.
    finance.get_by_role("link", name="Payment links").click()
    finance.get_by_label("What it is for").fill("Console link")
    finance.get_by_label("Fixed amount (yuan)").fill("3.21")
    finance.get_by_label("Single use (paid once, then closed)").check()
    finance.get_by_role("button", name="Create the link").click()
    expect(finance.locator("#status")).to_contain_text("Done")
    link_row = finance.locator("#payment-links tr", has_text="Console link")
    url = str(link_row.get_by_role("link", name="Console link").get_attribute("href"))
    poster = httpx.get(str(link_row.get_by_role("link", name="A6 poster (SVG)").get_attribute("href")), timeout=30)
    assert poster.status_code == 200 and poster.text.startswith("<svg")
    check_accessibility(finance, "console-payment-links")
    payer_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    _en(payer_ctx, shop)
    payer = payer_ctx.new_page()
    payer.goto(url)
    payer.get_by_role("button", name="Continue to payment").click()
    payer.wait_for_url(re.compile(r"/checkout/cst_[^/?]+$"))
    payer.get_by_role("button", name="WeChat Pay").click()
    expect(payer.locator(".qr svg")).to_be_visible()
    view = httpx.get(f"{gw}/v1/checkout/pages/{payer.url.rsplit('/', 1)[1]}", timeout=30).json()
    phone = payer_ctx.new_page()
    phone.goto(view["payment"]["payer_action"]["channel_data"]["sandbox_pay_url"])
    phone.get_by_role("button", name=re.compile("Approve")).click()
    expect(phone.locator("b", has_text="SUCCESS")).to_be_visible()  # the sandbox's order paid: now Juhe learns it
    payer_ctx.close()
    deadline = time.monotonic() + 60
    while finance.locator("#payment-links tr", has_text="Console link").locator(".link-status").inner_text() != "paid":
        assert time.monotonic() < deadline, finance.locator("#payment-links").inner_text()
        finance.reload()
    expect(finance.locator("#payment-links tr", has_text="Console link").locator(".link-uses")).to_contain_text("1 / 1")

    # The developer finds that payment's delivery on the endpoint's page (nobody answers at its URL), opens its
    # attempts and resends it.
    developer.goto(gw + f"/console/merchant/webhooks/{endpoint_id}")
    _eventually_visible(developer, "#endpoint-deliveries button")
    developer.locator("#endpoint-deliveries tbody th a").first.click()
    expect(developer.locator("#attempts")).to_be_visible()
    check_accessibility(developer, "console-webhook-endpoint")
    developer.locator("#endpoint-deliveries button").first.click()
    expect(developer.locator("#status")).to_contain_text("Delivery queued again")
    developer.get_by_role("link", name="Back to webhooks").click()
    developer.locator("#endpoints tr", has_text="console-hook").get_by_role("button", name="Disable").click()
    expect(developer.locator("#endpoints tr", has_text="console-hook").locator(".endpoint-status")).to_have_text(
        "disabled"
    )
    assert _endpoint(shop, endpoint_id)["enabled"] is False
    developer.locator("#endpoints tr", has_text="console-hook").get_by_role("button", name="Delete").click()
    expect(developer.locator("#endpoints")).not_to_contain_text("console-hook")
    finance.locator("#payment-links tr", has_text="Console link").get_by_role(
        "button", name=re.compile("Deactivate")
    ).click()
    expect(finance.locator("#payment-links tr", has_text="Console link").locator(".link-status")).to_have_text(
        "deactivated"
    )
    # The page's live / test switch: that link was made in test mode (this platform's default); a link made on the
    # live list is live (the console session names the mode, the gateway forwards it) and each list holds its own.
    finance.get_by_role("link", name="Live links").click()
    expect(finance.locator("#payment-links")).not_to_contain_text("Console link")
    finance.get_by_label("What it is for").fill("Live desk link")
    finance.get_by_label("Fixed amount (yuan)").fill("1.23")
    finance.get_by_role("button", name="Create the link").click()
    expect(finance.locator("#payment-links tr", has_text="Live desk link")).to_be_visible()
    expect(finance.locator("#payment-links tr", has_text="Live desk link")).not_to_contain_text("(Test)")
    finance.get_by_role("link", name="Test links").click()
    expect(finance.locator("#payment-links tr", has_text="Console link")).to_contain_text("(Test)")
    expect(finance.locator("#payment-links")).not_to_contain_text("Live desk link")

    # The owner creates a stock the merchant funds and starts it; a payer claims a coupon; support redeems it at the
    # till once, and the second time it is refused; the stock's figures count the one redemption.
    owner.get_by_role("link", name="Coupons", exact=True).click()
    owner.get_by_label("Name").fill("Console 5 off")
    owner.get_by_label("Amount off (yuan)").fill("5")
    owner.get_by_label("Number of coupons").fill("10")
    owner.get_by_role("button", name="Create the stock").click()
    expect(owner.locator("#status")).to_contain_text("Done")
    owner.get_by_role("button", name="Start Console 5 off").click()
    expect(owner.locator("#stocks tr", has_text="Console 5 off").locator(".stock-status")).to_have_text("running")
    stock_id = next(
        s["stock_id"]
        for s in shop.merchant.request("GET", "/v1/marketing/stocks")["data"]
        if s["name"] == "Console 5 off"
    )
    user = Client(gw, token=shop.platform.keys["user_token"], max_retries=0)
    coupon = user.request(
        "POST",
        "/v1/marketing/me/claims",
        json={"stock_id": stock_id, "request_id": "console-1"},
        idempotency_key=f"claim-{uuid.uuid4().hex}",
    )
    user.close()
    support.get_by_role("link", name="Redeem a coupon").click()

    def redeem_at_the_till() -> None:
        support.get_by_label("Coupon code (type it or scan its QR)").fill(coupon["qr_payload"])
        support.get_by_label("Order amount (yuan)").fill("30.00")
        support.get_by_role("button", name="Redeem", exact=True).click()

    redeem_at_the_till()
    expect(support.locator("#redeemed-discount")).to_have_text(money(500, "CNY", "en"))
    support.get_by_role("button", name=re.compile("Undo")).click()  # a mistake at the till: the coupon is back
    expect(support.locator("#status")).to_contain_text("Done")
    redeem_at_the_till()
    expect(support.locator("#redeemed-payable")).to_have_text(money(2500, "CNY", "en"))
    check_accessibility(support, "console-redeem")
    redeem_at_the_till()  # the same coupon again: refused, nothing redeemed
    expect(support.locator("#redeem-refused")).to_contain_text("already used")
    owner.reload()
    stock_row = owner.locator("#stocks tr", has_text="Console 5 off").locator("td")
    assert [stock_row.nth(i).inner_text() for i in (3, 4)] == ["1", "1"]  # claimed, redeemed
    check_accessibility(owner, "console-coupons")
    owner.get_by_role("button", name="Pause Console 5 off").click()
    expect(owner.locator("#stocks tr", has_text="Console 5 off").locator(".stock-status")).to_have_text("paused")
    # A percent-off stock with a cap, then ended for good.
    owner.get_by_label("Name").fill("Console 12.5 pct")
    owner.get_by_label("A percentage off, up to a cap").check()
    owner.get_by_label("Percentage off (15 or 12.5)").fill("12.5")
    owner.get_by_label("At most off per coupon (yuan)").fill("20")
    owner.get_by_label("Number of coupons").fill("10")
    owner.get_by_role("button", name="Create the stock").click()
    percent_row = owner.locator("#stocks tr", has_text="Console 12.5 pct")
    expect(percent_row).to_contain_text(f"12.5% (at most {money(2000, 'CNY', 'en')})")
    owner.get_by_role("button", name="End Console 12.5 pct").click()
    expect(percent_row.locator(".stock-status")).to_have_text("ended")
    response = support.goto(gw + "/console/merchant/coupons")  # support redeems but does not run stocks
    assert response is not None and response.status == 403

    # The payment's page shows what the ledger posted on the merchant's own accounts (the pending account's credit).
    paid = shop.payments[0]
    finance.goto(gw + f"/console/merchant/payments/{paid['id']}")
    _eventually_visible(finance, "#postings .posting-amount")
    expect(finance.locator("#postings")).to_contain_text("Pending (2201)")
    credited = finance.locator("#postings tr", has_text="Payment").locator(".posting-amount").first.inner_text()
    net = int(Decimal(credited.removeprefix("CN¥").replace(",", "")) * 100)
    assert 0 < net <= paid["amount_minor"], credited  # the gross less the platform's fee
    statement = shop.merchant.request_raw("GET", "/v1/statements/transactions.csv").data
    for line in (r for r in csv.DictReader(io.StringIO(statement)) if r["payment_id"] == paid["id"]):
        assert net == int(line["amount_minor"]) - int(line["platform_fee_minor"] or 0)  # the statement's net
    check_accessibility(finance, "console-payment-postings")
    other = _write(gw, shop.platform.admin, "POST", "/v1/platform/merchants", {"name": "Postings elsewhere"})
    outsider = _write(
        gw,
        shop.platform.admin,
        "POST",
        "/v1/platform/staff",
        {
            "kind": "merchant",
            "role": "owner",
            "merchant_id": other["merchant_id"],
            "email": f"o{uuid.uuid4().hex[:6]}@b.example",
        },
    )
    session = {"Authorization": f"Bearer {_redeem(gw, outsider['url'])['session']['token']}"}
    theirs = httpx.get(f"{gw}/v1/console/payments/{paid['id']}/postings", headers=session, timeout=30)
    assert theirs.status_code == 200 and theirs.json()["data"] == []  # another merchant's payment: none of its lines
    # Every write above is in the owner's audit log.
    owner.goto(gw + "/console/merchant/audit")
    log_text = owner.locator("#audit").inner_text()
    for action in (
        "webhook_endpoint.created",
        "webhook_endpoint.secret_rotated",
        "payment_link.created",
        "coupon_stock.created",
        "coupon_stock.start",
        "coupon.redeemed",
        "coupon.redemption_undone",
        "webhook.resent",
        "webhook_endpoint.disabled",
        "webhook_endpoint.deleted",
        "payment_link.deactivated",
        "coupon_stock.pause",
        "coupon_stock.end",
    ):
        assert action in log_text, action
    for context in (developer_ctx, support_ctx, finance_ctx, owner_ctx):
        context.close()


# ---- the permission matrix ------------------------------------------------------------------------------------
def _redeem(gw: str, url: str) -> dict[str, Any]:
    """An invitation used as the web process would (its first-party token), without a browser: its session."""
    web_client = {"Authorization": "Bearer juhe-demo-web-client-token-change-me"}
    body = {"token": url.split("token=", 1)[1], "purpose": "invitation", "password": PASSWORD}
    r = httpx.post(gw + "/v1/web/console-links/redemption", headers=web_client, json=body, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _sign_in(gw: str, email: str) -> Browserless:
    client = Browserless(gw)
    token = csrf_of(client.request("GET", "/console/sign-in").text)
    r = client.request("POST", "/console/sign-in", data={"csrf": token, "email": email, "password": PASSWORD})
    assert r.status_code == 303, r.text
    return client


def test_every_console_route_for_every_role_matches_the_documented_matrix(shop: Shop) -> None:
    gw, p = shop.platform.gateway, shop.platform
    from web.app import create_app
    from web.config import Settings

    missing = sorted(declared_routes(create_app(Settings())) - set(REGISTRY))
    assert not missing, f"console routes without a permission in web/console REGISTRY: {missing}"
    matrix = documented_matrix("merchant")
    rules = [
        r
        for r in REGISTRY.values()
        if r.console == "merchant" or (r.permission == SIGNED_IN and "sign-out" not in r.path)
    ]
    assert all(r.permission in {SIGNED_IN, PUBLIC} or any(r.permission in s for s in matrix.values()) for r in rules)
    dummy = "0" * 32
    for role in matrix:
        email = f"{role}.matrix@console.example"
        made = _write(
            gw,
            p.admin,
            "POST",
            "/v1/platform/staff",
            {"kind": "merchant", "merchant_id": p.merchant_id, "email": email, "role": role},
        )
        _redeem(gw, made["url"])
        client = _sign_in(gw, email)
        try:
            csrf = csrf_of(client.request("GET", "/console/account").text)
            for rule in rules:
                path = re.sub(r"\{([a-z]+)_id\}", lambda m: f"{IDS[m.group(1)]}_{dummy}", rule.path)
                data = {"csrf": csrf} if rule.method == "POST" else None
                status = client.request(rule.method, path, data=data).status_code
                allowed = rule.permission == SIGNED_IN or rule.permission in matrix[role]
                assert (status != 403) == allowed and status not in (401, 500), (role, rule, status)
        finally:
            client.close()
