"""The hosted checkout in a real browser: Debian's Chromium on the real platform (the launcher on free ports, the
web process, the channel sandboxes), reached through the gateway's one public origin, as a payer would.

A merchant creates each session with the Python SDK (signed through the gateway). Desktop: WeChat Pay QR,
approved on the sandbox's payer page from "another phone", the page turns to success without a reload and
sends the payer back to the shop with parameters the SDK verifies; the ledger posted the payment. Phone
(emulated iPhone): Alipay's H5 page and back. Wallet: a signed-in user pays with the payment PIN. Expiry:
the countdown ends, the page says so, the old QR is refused at the channel. axe-core finds no serious or
critical violation on any checkout page; screenshots in `.artifacts/web/`. The shop (`https://shop.example`) is
played by Playwright's request routing, which records where the browser was sent.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from libs.common.services import REPO_ROOT
from web.tests import test_wallet_in_chromium as wallet_e2e
from web.tests.test_wallet_in_chromium import (
    STEP_TIMEOUT_MS,
    Platform,
    _write,
    a_user_with_a_wallet,
    check_accessibility,
    sign_in_link,
)

sys.path.insert(0, str(REPO_ROOT / "sdk" / "python"))
from juhe_sdk import Client, verify_checkout_return

# The wallet test's module-scoped fixtures, instantiated again here: one launched platform and one browser for
# this module.
platform = wallet_e2e.platform
eventually = wallet_e2e.eventually  # tests/e2e's bounded polling, on the path once that module is imported
browser = wallet_e2e.browser

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # the first test also starts the platform
SHOP = "https://shop.example"
EXPIRY_SECONDS = 60  # the shortest session: the expiry test's session is created first, checked last
PAGE_BYTES_MAX = 100_000
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 15_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/15.0 Mobile/15E148 Safari/604.1"
)


def merchant(platform: Platform) -> Client:
    return Client(platform.gateway, key_id=platform.keys["key_id"], secret=platform.keys["secret"])


def new_session(platform: Platform, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "merchant_order_no": f"web_{uuid.uuid4().hex[:12]}",
        "amount_minor": 2_500,
        "currency": "CNY",
        "description": "停车费 2 小时",
        "return_url": f"{SHOP}/return",
        "cancel_url": f"{SHOP}/cart",
        "line_items": [{"name": "停车", "quantity": 2, "amount_minor": 2_500}],
    }
    body.update(overrides)
    session: dict[str, Any] = merchant(platform).request(
        "POST", "/v1/checkout/sessions", json=body, idempotency_key=f"ck-{uuid.uuid4().hex}"
    )
    assert session["status"] == "open" and session["url"].startswith(platform.gateway + "/checkout/cst_")
    return session


def approve_in_the_sandbox(phone: Page) -> None:
    """The payer approves on the WeChat Pay sandbox's payer page, which is closed once the approval's navigation
    has committed: closing a page mid-commit can leave Chromium's close unanswered for ever (microsoft/playwright
    #42366; a clean-clone run hung 600 s in `phone.close()`)."""
    phone.get_by_role("button", name=re.compile("Approve")).click()
    expect(phone.locator("b", has_text="SUCCESS")).to_be_visible()
    phone.close()


def page_view(platform: Platform, session: dict[str, Any]) -> dict[str, Any]:
    token = session["url"].rsplit("/", 1)[1]
    view: dict[str, Any] = httpx.get(f"{platform.gateway}/v1/checkout/pages/{token}", timeout=30).json()
    return view


class Shop:
    """The merchant's site: every request to it is answered with a small page and remembered."""

    def __init__(self, context: BrowserContext) -> None:
        self.visits: list[str] = []
        self.pay_url = ""  # the cart page links to the checkout (a cross-site navigation, as in real life)
        context.route(f"{SHOP}/**", self._answer)

    def _answer(self, route: Route) -> None:
        self.visits.append(route.request.url)
        link = f"<a id='pay' href='{self.pay_url}'>Pay</a>" if self.pay_url else ""
        route.fulfill(
            status=200,
            content_type="text/html; charset=utf-8",
            body=f"<!doctype html><html lang='en'><title>Shop</title><h1>Thank you</h1>{link}</html>",
        )

    def returned(self, platform: Platform, session: dict[str, Any]) -> dict[str, str]:
        """The return's query, verified as a merchant would with the SDK."""
        returns = [url for url in self.visits if url.startswith(f"{SHOP}/return")]
        assert returns, self.visits
        params = dict(parse_qsl(urlsplit(returns[-1]).query))
        assert params["checkout_session_id"] == session["id"] and params["status"] == "completed"
        assert verify_checkout_return(params, platform.keys["webhook_secret"])
        assert not verify_checkout_return({**params, "amount_minor": "1"}, platform.keys["webhook_secret"])
        return params


def new_context(browser: Browser, **options: Any) -> BrowserContext:
    context = browser.new_context(**options)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    return context


@pytest.fixture(scope="module")
def expiring(platform: Platform) -> dict[str, Any]:
    """A session of the shortest life, created when the module starts — its deadline passes while the others
    run — with a WeChat Pay QR started at once, as the page's button does, so the expiry test finds the old QR
    however long the tests before it took (on a busy machine the session may be over before that test opens it)."""
    session = new_session(platform, expires_in_seconds=EXPIRY_SECONDS)
    token = session["url"].rsplit("/", 1)[1]
    started = httpx.post(
        f"{platform.gateway}/v1/checkout/pages/{token}/payments",
        timeout=30,
        json={
            "method": "wechatpay",
            "scene": "native_qr",
            "request_id": uuid.uuid4().hex,
            "payer": {"client_ip": "127.0.0.1"},
        },
    )
    assert started.status_code == 200, started.text
    payment = started.json()["payment"]
    assert payment["payer_action"]["channel_data"]["sandbox_pay_url"], payment
    return {**session, "qr_payment": payment}


def test_desktop_wechat_qr_turns_to_success_live_and_returns_signed(
    platform: Platform, browser: Browser, expiring: dict[str, Any]
) -> None:
    before = merchant(platform).request("GET", f"/v1/wallet/merchants/{platform.merchant_id}/balances")
    session = new_session(platform)
    context = new_context(browser, locale="zh-CN", viewport={"width": 1280, "height": 900})
    shop = Shop(context)
    page = context.new_page()
    loaded: list[int] = []
    page.on("response", lambda r: loaded.append(int(r.headers.get("content-length") or len(r.body()))))
    page.goto(session["url"])
    expect(page.get_by_role("heading", level=1)).to_have_text("向Demo merchant付款")
    expect(page.locator("#amount")).to_have_text("¥25.00")
    expect(page.locator("#countdown")).to_have_text(re.compile(r"^1[45]:\d\d$"))
    assert sum(loaded) < PAGE_BYTES_MAX, loaded  # first load, everything the page fetched
    check_accessibility(page, "20-checkout-desktop-zh")

    page.get_by_role("button", name="微信支付").click()
    expect(page.get_by_role("heading", name="请使用微信支付扫码支付")).to_be_visible()
    expect(page.locator(".qr svg")).to_be_visible()
    check_accessibility(page, "21-checkout-qr-zh")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    payment = page_view(platform, session)["payment"]
    phone = context.new_page()  # the payer's phone scanned the QR: the channel sandbox's payer page
    phone.goto(payment["payer_action"]["channel_data"]["sandbox_pay_url"])
    approve_in_the_sandbox(phone)

    expect(page.get_by_role("status")).to_contain_text("支付成功")
    assert page.evaluate("window.__sameDocument === true")  # the live status changed it, no reload
    page.wait_for_url(re.compile(r"/checkout/cst_[^/]+/result$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("已向Demo merchant付款")
    check_accessibility(page, "22-checkout-paid-zh")
    page.wait_for_url(re.compile(r"^https://shop\.example/return\?"))
    params = shop.returned(platform, session)
    paid = merchant(platform).request("GET", f"/v1/checkout/sessions/{session['id']}")
    assert paid["status"] == "completed" and paid["payment_id"] == params["payment_id"] == payment["id"]

    def posted() -> bool:  # the ledger posted the payment (its merchant balances moved)
        return merchant(platform).request("GET", f"/v1/wallet/merchants/{platform.merchant_id}/balances") != before

    eventually(posted, "the ledger to post the payment")
    context.close()


def test_phone_pays_alipay_on_its_h5_page_and_comes_back(platform: Platform, browser: Browser) -> None:
    session = new_session(platform, amount_minor=1_800, line_items=[], description="Tuition deposit")
    context = new_context(browser, **{**_iphone(), "locale": "en-US"})
    shop = Shop(context)
    page = context.new_page()
    page.goto(session["url"])
    expect(page.get_by_role("heading", level=1)).to_have_text("Pay Demo merchant")
    check_accessibility(page, "23-checkout-phone-en")
    page.get_by_role("button", name="Alipay").click()
    go = page.get_by_role("link", name="Continue to Alipay")
    expect(go).to_be_visible()
    check_accessibility(page, "24-checkout-phone-h5-en")
    go.click()  # the channel's own H5 cashier (the Alipay sandbox)
    page.get_by_role("button", name=re.compile("Approve")).click()
    page.wait_for_url(re.compile(r"^https://shop\.example/return\?"), timeout=60_000)
    shop.returned(platform, session)
    context.close()


UNIONPAY_TEST_CARD = "6216261000000000018"  # the UnionPay sandbox's card that pays (sandboxes/unionpay/README.md)


def test_desktop_pays_unionpay_on_its_card_page_and_comes_back(platform: Platform, browser: Browser) -> None:
    """UnionPay's desktop product is a form the browser posts to UnionPay (its consume page), not a QR: the page
    shows it with a button, its CSP lets that one form leave, and UnionPay's posted return lands on the result."""
    session = new_session(platform, amount_minor=3_300, line_items=[], description="Parking, March")
    context = new_context(browser, locale="en-US", viewport={"width": 1280, "height": 900})
    shop = Shop(context)
    page = context.new_page()
    page.goto(session["url"])
    page.get_by_role("button", name="UnionPay").click()
    go = page.get_by_role("button", name="Continue to UnionPay")
    expect(go).to_be_visible()
    check_accessibility(page, "27-checkout-unionpay-form-en")
    go.click()  # the browser posts the signed consume form to the UnionPay sandbox's card page
    page.wait_for_url("**/pay/consume/**")
    page.fill("#card_no", UNIONPAY_TEST_CARD)
    page.fill("#expiry", "1229")
    page.fill("#cvn2", "123")
    page.fill("#sms_code", "111111")
    page.click("#pay")
    page.wait_for_url(re.compile(r"^https://shop\.example/return\?"), timeout=60_000)
    params = shop.returned(platform, session)
    paid = merchant(platform).request("GET", f"/v1/checkout/sessions/{session['id']}")
    assert paid["status"] == "completed" and paid["payment_id"] == params["payment_id"]
    assert merchant(platform).request("GET", f"/v1/payments/{params['payment_id']}")["channel"] == "unionpay"
    context.close()


def test_a_signed_in_user_pays_from_the_wallet_with_the_payment_pin(platform: Platform, browser: Browser) -> None:
    gw, admin = platform.gateway, platform.admin
    _offer_the_wallet(platform)
    user_id = a_user_with_a_wallet(platform)
    token = _write(gw, admin, "POST", f"/v1/platform/users/{user_id}/tokens", {"ttl_seconds": 600})["token"]
    pin = httpx.put(
        f"{gw}/v1/me/payment-pin",
        json={"pin": "246813"},
        timeout=30,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert pin.status_code in (200, 201), pin.text
    session = new_session(platform, amount_minor=3_000, line_items=[], description="Property fee")
    context, shop, page = _signed_in(platform, browser, user_id, viewport={"width": 390, "height": 844})
    expect(page.locator("#available")).to_have_text("¥1,000.00")
    shop.pay_url = session["url"]
    page.goto(f"{SHOP}/cart")
    page.locator("#pay").click()  # from the shop's site: the Strict session cookie still counts (one same-site hop)
    page.get_by_label("支付密码").fill("111111")
    page.get_by_role("button", name="钱包支付").click()
    expect(page.get_by_role("status")).to_contain_text("支付密码错误")  # nothing paid
    check_accessibility(page, "25-checkout-wallet-zh")
    page.get_by_label("支付密码").fill("246813")
    page.get_by_role("button", name="钱包支付").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("已向Demo merchant付款")
    page.wait_for_url(re.compile(r"^https://shop\.example/return\?"))
    shop.returned(platform, session)
    page.goto(f"{gw}/wallet")
    expect(page.locator("#available")).to_have_text("¥970.00")
    context.close()


def test_expiry_ends_the_countdown_and_the_old_qr_is_refused(
    platform: Platform, browser: Browser, expiring: dict[str, Any]
) -> None:
    context = new_context(browser, locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(expiring["url"])  # the live QR, or already the expired page on a busy machine
    old = expiring["qr_payment"]
    expect(page.get_by_role("heading", name="This checkout has expired")).to_be_visible(
        timeout=(EXPIRY_SECONDS + 60) * 1000
    )  # the countdown reaches zero and the page reloads
    check_accessibility(page, "26-checkout-expired-en")
    out_trade_no = urlsplit(old["payer_action"]["channel_data"]["sandbox_pay_url"]).path.rsplit("/", 1)[1]
    mchid = dict(parse_qsl(urlsplit(old["payer_action"]["channel_data"]["sandbox_pay_url"]).query)).get("mchid")

    def closed() -> bool:
        return str(page_view(platform, expiring)["status"]) == "expired"

    eventually(closed, "the session to expire")
    refused = httpx.post(
        f"{platform.sandboxes['wechatpay']}/control/orders/{out_trade_no}/approve",
        params={"mchid": mchid} if mchid else None,
        timeout=30,
    )
    assert refused.status_code >= 400, refused.text  # the old QR cannot be paid
    ended = merchant(platform).request("GET", f"/v1/checkout/sessions/{expiring['id']}")
    assert ended["status"] == "expired" and ended["payment_id"] is None
    context.close()


def _signed_in(platform: Platform, browser: Browser, user_id: str, **options: Any) -> tuple[BrowserContext, Shop, Page]:
    """A zh-CN browser of `user_id`, signed in to My Wallet by a sign-in link (the session cookie set)."""
    context = new_context(browser, locale="zh-CN", **options)
    shop = Shop(context)
    page = context.new_page()
    page.goto(sign_in_link(platform, user_id))
    page.get_by_role("button", name="进入我的钱包").click()
    eventually(lambda: any(c["name"] == "juhe_session" for c in context.cookies()), "the My Wallet session cookie")
    return context, shop, page


def _iphone() -> dict[str, Any]:
    """Playwright's "iPhone 13" descriptor (the browser fixture's Playwright instance is not reachable here)."""
    return {
        "user_agent": IPHONE_UA,
        "viewport": {"width": 390, "height": 664},
        "device_scale_factor": 3,
        "is_mobile": True,
        "has_touch": True,
    }


def _offer_the_wallet(platform: Platform) -> None:
    """Operator set-up: the demo merchant takes the platform wallet (routing has no wallet scene: the cashier
    uses the merchant's own channel order for it, as for any method routing cannot decide)."""
    _write(
        platform.gateway,
        platform.admin,
        "PUT",
        f"/v1/admin/merchants/{platform.merchant_id}/channels/wallet",
        {"priority": 3, "enabled": True, "config": {}},
    )


def test_a_reusable_payment_link_with_an_entered_amount_and_a_plate_is_paid_twice(
    platform: Platform, browser: Browser
) -> None:
    """A parking gate's link: the payer enters the amount and the plate number, pays on a fresh checkout session,
    and lands on Juhe's thank-you page; the same link paid again by another car; the plate is on each payment. A
    bad plate is refused on the page (zh and en), and the link's A4/A6 posters are vector SVG with the QR."""
    link = merchant(platform).request(
        "POST",
        "/v1/payment-links",
        json={
            "currency": "CNY",
            "description": "停车缴费 北门",
            "amount_min_minor": 100,
            "amount_max_minor": 50_000,
            "payer_fields": ["plate_number"],
            "allowed_methods": ["wechatpay"],
        },
        idempotency_key=f"pl-{uuid.uuid4().hex}",
    )
    assert link["url"].startswith(platform.gateway + "/pay/pl_") and link["amount_minor"] is None
    context = new_context(browser, locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    for n, (typed, plate, minor) in enumerate((("12.34", "沪A12345", 1_234), ("56", "粤B 12345", 5_600))):
        page.goto(link["url"])
        expect(page.get_by_role("heading", level=1)).to_have_text("向Demo merchant付款")
        if n == 0:
            check_accessibility(page, "30-pay-link-zh")
        page.get_by_label("金额（元）").fill(typed)
        page.get_by_label("车牌号").fill(plate)
        page.get_by_role("button", name="去付款").click()
        page.wait_for_url(re.compile(r"/checkout/cst_[^/?]+$"))
        expect(page.locator("#amount")).to_have_text(f"¥{minor / 100:.2f}")
        page.get_by_role("button", name="微信支付").click()
        expect(page.locator(".qr svg")).to_be_visible()
        view = httpx.get(f"{platform.gateway}/v1/checkout/pages/{page.url.rsplit('/', 1)[1]}", timeout=30).json()
        phone = context.new_page()  # the payer's phone scans the QR: the sandbox's payer page
        phone.goto(view["payment"]["payer_action"]["channel_data"]["sandbox_pay_url"])
        approve_in_the_sandbox(phone)
        page.wait_for_url(re.compile(r"/pay/pl_[^/]+/paid\?"), timeout=60_000)  # the result page, then ours
        expect(page.get_by_role("heading", level=1)).to_have_text("已向Demo merchant付款")
        if n == 0:
            check_accessibility(page, "31-pay-link-paid-zh")
        payment = merchant(platform).request("GET", f"/v1/payments/{view['payment']['id']}")
        assert payment["amount_minor"] == minor and payment["metadata"]["plate_number"] == plate.replace(" ", "")
        assert payment["metadata"]["payment_link_id"] == link["id"]
    assert merchant(platform).request("GET", f"/v1/payment-links/{link['id']}")["uses_completed"] == 2

    page.goto(link["url"] + "?lang=en")
    page.get_by_label("Amount (yuan)").fill("1")
    page.get_by_label("Plate number").fill("NOT A PLATE")
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.locator("#error")).to_have_text("Check the details you entered.")
    check_accessibility(page, "32-pay-link-refused-en")

    for size, width in (("a6", "105mm"), ("a4", "210mm")):
        poster = httpx.get(f"{link['poster_url']}?size={size}", timeout=30)
        assert poster.status_code == 200 and poster.headers["content-type"].startswith("image/svg+xml")
        assert f'width="{width}"' in poster.text and "<script" not in poster.text and "扫码付款" in poster.text
        assert "微信支付" in poster.text and "支付宝" not in poster.text  # the link's one method, no other
    page.goto(f"{link['poster_url']}?size=a6")
    page.screenshot(path=str(REPO_ROOT / ".artifacts" / "web" / "33-pay-link-poster-a6.png"))
    context.close()


EMBEDDING_SHOP = "https://embedding-shop.example"  # registered for the demo merchant below
OTHER_SITE = "https://other-site.example"  # never registered
# Juhe's public https origin, as a merchant's page sees it: the browser's requests to it are passed to the
# gateway. (Chromium refuses a public page's requests to a loopback address, so the test cannot embed
# http://127.0.0.1 directly, and a real deployment is not on loopback either.)
JUHE_PUBLIC = "https://pay.juhe.example"


def _public_juhe(context: BrowserContext, platform: Platform) -> None:
    def forward(route: Route) -> None:
        url = platform.gateway + route.request.url[len(JUHE_PUBLIC) :]
        if urlsplit(url).path.endswith("/events"):
            route.abort()  # a stream cannot pass through a buffered route: the page falls back to 2 s polling
            return
        # Redirects are followed here: Chromium shows an error page for a frame's navigation fulfilled with a 3xx
        # by an interception (measured; a real 303 is followed as usual, as the page's other tests show).
        route.fulfill(response=route.fetch(url=url))

    context.route(f"{JUHE_PUBLIC}/**", forward)


def _merchant_page(session_url: str) -> str:
    """A merchant's page with juhe.js and a "Pay" button; what juhe.js reports lands in `window.juheEvents`."""
    return f"""<!doctype html><html lang="en"><head><title>Shop</title>
<script src="{JUHE_PUBLIC}/static/juhe.js"></script></head><body><h1>Cart</h1>
<button id="pay" type="button">Pay</button>
<script>
window.juheEvents = [];
document.getElementById("pay").addEventListener("click", function () {{
  Juhe.checkout({{ url: "{session_url}",
    onPaid: function (e) {{ window.juheEvents.push("paid:" + (e.returnUrl ? "signed" : "none")); }},
    onClosed: function () {{ window.juheEvents.push("closed"); }},
    onExpired: function () {{ window.juheEvents.push("expired"); }} }});
}});
window.addEventListener("message", function (e) {{ if (e.data && e.data.source === "juhe") {{
  window.juheEvents.push("seen-from:" + e.origin); }} }});
</script></body></html>"""


def test_juhe_js_opens_the_checkout_in_a_modal_only_on_a_registered_origin(
    platform: Platform, browser: Browser
) -> None:
    """juhe.js on a registered merchant origin: the modal opens, the payer pays by WeChat Pay QR inside it, the
    page gets `paid` (from Juhe's origin only) and the modal closes; the same script on another origin gets a
    frame the browser refuses (the checkout's CSP frame-ancestors names only the registered origin)."""
    _write(
        platform.gateway,
        platform.admin,
        "PUT",
        f"/v1/admin/merchants/{platform.merchant_id}/checkout-origins",
        {"origins": [EMBEDDING_SHOP]},
    )
    session = new_session(platform, allowed_methods=["wechatpay"])
    context = new_context(browser, locale="zh-CN", viewport={"width": 1280, "height": 900})
    _public_juhe(context, platform)
    public_url = JUHE_PUBLIC + session["url"][len(platform.gateway) :]
    body = _merchant_page(public_url)
    for site in (EMBEDDING_SHOP, OTHER_SITE):
        context.route(f"{site}/**", lambda route: route.fulfill(status=200, content_type="text/html", body=body))
    page = context.new_page()
    page.goto(f"{EMBEDDING_SHOP}/cart")
    page.get_by_role("button", name="Pay").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    frame = page.frame_locator("iframe")
    expect(frame.get_by_role("heading", level=1)).to_have_text("向Demo merchant付款")
    # A form post inside the frame: no cookie of Juhe's site there, so its CSRF token is bound to the page.
    frame.get_by_role("button", name="微信支付").click()
    expect(frame.locator(".qr svg")).to_be_visible()
    check_accessibility(page, "34-juhe-js-modal")
    payment = page_view(platform, session)["payment"]
    phone = context.new_page()
    phone.goto(payment["payer_action"]["channel_data"]["sandbox_pay_url"])
    approve_in_the_sandbox(phone)
    page.wait_for_function("window.juheEvents.indexOf('paid:signed') >= 0", timeout=60_000)
    events = page.evaluate("window.juheEvents")
    assert events == [f"seen-from:{JUHE_PUBLIC}", "paid:signed"], events
    expect(page.get_by_role("dialog")).to_have_count(0)  # closed on paid
    assert merchant(platform).request("GET", f"/v1/checkout/sessions/{session['id']}")["status"] == "completed"

    other = context.new_page()
    other.goto(f"{OTHER_SITE}/cart")
    with other.expect_response(lambda r: r.url.startswith(public_url)) as answer:
        other.get_by_role("button", name="Pay").click()
    policy = answer.value.headers["content-security-policy"]
    assert f"frame-ancestors {EMBEDDING_SHOP}" in policy and OTHER_SITE not in policy
    deadline = time.monotonic() + 60
    while not any(f.url.startswith("chrome-error://") for f in other.frames if f is not other.main_frame):
        assert time.monotonic() < deadline, [f.url for f in other.frames]
        other.wait_for_timeout(250)  # bounded polling that lets Playwright deliver the frame's navigation
    assert other.evaluate("window.juheEvents") == []
    context.close()


WECHAT_IN_APP_UA = IPHONE_UA + " MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN"
ALIPAY_IN_APP_UA = IPHONE_UA + " AlipayClient/10.5.96.8000 Language/zh-Hans"


def test_inside_the_wechat_and_alipay_apps_the_payer_authorises_and_pays_with_the_app_bridge(
    platform: Platform, browser: Browser
) -> None:
    """Inside WeChat only WeChat Pay is offered, inside Alipay only Alipay (each app can pay only itself), as a link
    to the app's authorisation; the app (the sandbox) sends the payer back with a code, the cashier redeems it and
    creates the JSAPI payment, and the page calls the app's bridge with the signed parameters: the stand-in bridge
    (the sandbox's script, injected before the page's) has the sandbox check paySign with the merchant's key and
    pay; the page turns to success by its live status and returns to the shop with a verified signature. The seed's
    WeChat configuration carries the appid's AppSecret, so this works out of the box (`make run`)."""
    bridge_script = httpx.get(f"{platform.sandboxes['wechatpay']}/control/app-bridge.js", timeout=30).text
    for user_agent, shown, hidden in (
        (WECHAT_IN_APP_UA, "微信支付", "支付宝"),
        (ALIPAY_IN_APP_UA, "支付宝", "微信支付"),
    ):
        session = new_session(platform, amount_minor=1_200, line_items=[], description="停车 1 小时")
        context = new_context(browser, **{**_iphone(), "user_agent": user_agent, "locale": "zh-CN"})
        shop = Shop(context)
        bridged: list[str] = []

        def app_bridge(app: str, name: str, params: dict[str, Any], calls: list[str] = bridged) -> dict[str, Any]:
            """The app receives the page's bridge call: the sandbox acts for it (outside the page's CSP)."""
            calls.append(f"{app}:{name}")
            if app == "wechat":
                url = f"{platform.sandboxes['wechatpay']}/control/app-bridge/wechat/pay"
            else:
                url = f"{platform.sandboxes['alipay']}/control/app-bridge/alipay/trade-pay"
            answer: dict[str, Any] = httpx.post(url, json=params, timeout=30).json()
            return answer

        context.expose_function("__juheSandboxBridge", app_bridge)
        context.add_init_script(bridge_script)
        page = context.new_page()
        page.goto(session["url"])
        go = page.get_by_role("link", name=shown, exact=True)
        expect(go).to_be_visible()
        expect(page.get_by_role("button", name=hidden)).to_have_count(0)
        expect(page.get_by_role("link", name=hidden, exact=True)).to_have_count(0)
        if shown == "微信支付":
            assert "/connect/oauth2/authorize?appid=" in str(go.get_attribute("href"))
            check_accessibility(page, "35-checkout-in-wechat-zh")
        go.click()  # the app authorises, back to /checkout/…/oauth/…, the JSAPI payment, the bridge
        page.wait_for_url(re.compile(r"^https://shop\.example/return\?"), timeout=60_000)
        params = shop.returned(platform, session)
        payment = merchant(platform).request("GET", f"/v1/payments/{params['payment_id']}")
        channel = "wechatpay" if shown == "微信支付" else "alipay"
        assert payment["channel"] == channel and payment["scene"] == "jsapi" and payment["status"] == "succeeded"
        assert bridged == ["wechat:getBrandWCPayRequest" if channel == "wechatpay" else "alipay:tradePay"]
        context.close()


COUPON_OFF, COUPON_PLATFORM_BPS = 500, 3_000  # ¥5 off a ¥25 order, 30 % funded by the platform, 70 % by the shop


def _claimed_coupon(platform: Platform, user_token: str) -> str:
    """The platform runs a shared-funding 满10减5 stock for the demo merchant; the user claims one coupon."""
    gw, admin = platform.gateway, platform.admin
    campaign = _write(gw, admin, "POST", "/v1/marketing/campaigns", {"name": "Checkout spring"})
    stock = _write(
        gw,
        admin,
        "POST",
        "/v1/marketing/stocks",
        {
            "campaign_id": campaign["campaign_id"],
            "name": "满10减5",
            "discount_kind": "fixed",
            "amount_off_minor": COUPON_OFF,
            "threshold_minor": 1_000,
            "valid_days_after_claim": 30,
            "merchant_ids": [platform.merchant_id],
            "funding_party": "shared",
            "platform_share_bps": COUPON_PLATFORM_BPS,
            "refund_policy": "return_on_full_refund",
            "budget_count": 10,
            "per_user_limit": 1,
        },
    )
    _write(gw, admin, "POST", f"/v1/marketing/stocks/{stock['stock_id']}/start")
    user = {"Authorization": f"Bearer {user_token}"}
    claimed = _write(
        gw, user, "POST", "/v1/marketing/me/claims", {"stock_id": stock["stock_id"], "request_id": uuid.uuid4().hex}
    )
    return str(claimed["coupon_id"])


def _ledger_kinds(platform: Platform, payment_id: str) -> dict[tuple[str, str], int]:
    """{(account kind, direction): amount} of the ledger's posting of the payment (the cashier's transfer)."""
    found = httpx.get(
        f"{platform.gateway}/v1/transfers",
        headers=platform.admin,
        timeout=30,
        params={"source": "cashier", "idempotency_key": f"{payment_id}:succeeded"},
    )
    if found.status_code != 200:
        return {}
    lines: dict[tuple[str, str], int] = {}
    for posting in found.json()["postings"]:
        account = httpx.get(
            f"{platform.gateway}/v1/accounts/{posting['account_id']}", headers=platform.admin, timeout=30
        ).json()
        key = (str(account["kind"]), str(posting["direction"]))
        lines[key] = lines.get(key, 0) + int(posting["amount_minor"])
    return lines


def test_a_signed_in_payer_pays_less_with_a_claimed_coupon(platform: Platform, browser: Browser) -> None:
    """A signed-in My Wallet payer sees their applicable coupon with its discount and the amount to pay (the gateway
    asks marketing for the session's user), pays by WeChat Pay with it, the channel collects the discounted amount,
    the result shows the discount, the coupon is used and the ledger posts the platform's share of the discount as
    marketing expense."""
    gw, admin = platform.gateway, platform.admin
    user_id = f"usr_ck_{uuid.uuid4().hex[:8]}"  # a user of the platform's app; no wallet needed to use a coupon
    _write(gw, admin, "POST", "/v1/platform/users", {"name": "钱小七", "user_id": user_id})
    user_token = _write(gw, admin, "POST", f"/v1/platform/users/{user_id}/tokens", {"ttl_seconds": 600})["token"]
    coupon_id = _claimed_coupon(platform, user_token)
    session = new_session(platform, amount_minor=2_500, line_items=[], description="Car wash")
    context, shop, page = _signed_in(platform, browser, user_id, viewport={"width": 1280, "height": 900})
    page.goto(session["url"])
    offer = page.get_by_role("radio", name="减 ¥5.00：实付 ¥20.00")
    expect(page.get_by_role("group", name="我的优惠券")).to_be_visible()
    expect(offer).to_be_checked()  # the best coupon first, chosen; "no coupon" is the other choice
    check_accessibility(page, "36-checkout-coupon-zh")
    offer.focus()
    page.keyboard.press("Space")  # keyboard: the radio stays chosen, the method is the form's next stop
    page.get_by_role("button", name="微信支付").click()
    expect(page.locator("#to-pay")).to_have_text("使用优惠券（减 ¥5.00），实付 ¥20.00")
    payment = page_view(platform, session)["payment"]
    assert payment["amount_minor"] == 2_000 and payment["discount_minor"] == COUPON_OFF
    phone = context.new_page()
    phone.goto(payment["payer_action"]["channel_data"]["sandbox_pay_url"])
    approve_in_the_sandbox(phone)
    page.wait_for_url(re.compile(r"/checkout/cst_[^/]+/result$"))
    expect(page.locator("#discount")).to_have_text("订单金额 ¥25.00，优惠券减 ¥5.00")
    expect(page.locator(".big")).to_have_text("¥20.00")
    page.wait_for_url(re.compile(r"^https://shop\.example/return\?"))
    shop.returned(platform, session)
    paid = merchant(platform).request("GET", f"/v1/payments/{payment['id']}")
    platform_part = COUPON_OFF * COUPON_PLATFORM_BPS // 10_000  # the platform's ¥1.50; the shop's ¥3.50
    assert paid["status"] == "succeeded" and paid["refundable_minor"] == 2_000  # the channel collected ¥20.00
    assert paid["discount"]["platform_minor"] == platform_part
    user = {"Authorization": f"Bearer {user_token}"}

    def used() -> bool:
        mine = httpx.get(f"{gw}/v1/marketing/me/coupons/{coupon_id}", headers=user, timeout=30).json()
        return str(mine.get("status")) == "used"

    eventually(used, "the coupon to be used")
    lines = eventually(lambda: _ledger_kinds(platform, payment["id"]), "the ledger's posting of the payment")
    assert lines[("marketing_expense", "debit")] == platform_part
    context.close()
