"""My Wallet in a real browser: Debian's Chromium (docs/web.md) on the real platform (the launcher on
free ports: PostgreSQL, broker, every service, gateway, sandboxes) and the real web process, reached through
the gateway's one public origin, exactly as a user would.

The user is prepared through the gateway's API as the platform's app would (user, wallet holder verified by
the identity sandbox, a top-up, points, a credit line with a bill); then everything else happens on pages:
sign in by a one-time link, see balances, set and change the payment PIN, withdraw (the hold shows), repay,
exchange points, history filters, zh/en switch, 5 wrong PINs lock; an axe-core scan of every page finds no
serious or critical violation; with JavaScript off the read path still works. Screenshots go to
`.artifacts/web/` (git-ignored).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect, sync_playwright

from libs.common.embedded import free_port
from libs.common.services import FRONTENDS, REPO_ROOT, SANDBOXES, SERVICES
from libs.common.testing.infra import ServiceProcess
from libs.common.testing.plugin import data_dir_outside_pytest
from libs.common.testing.waiting import eventually_sync

if str(REPO_ROOT) not in sys.path:  # the launcher helpers of tests/e2e (not an installed package)
    sys.path.insert(0, str(REPO_ROOT))
from tests.e2e.test_launcher import _start_running, _stop, eventually
from tests.e2e.test_wallet_journey import Gateway, fund_escrow, resident_id

pytestmark = pytest.mark.e2e
ARTIFACTS = REPO_ROOT / ".artifacts" / "web"
CARD = "6222600260001072444"
NAME = "钱小六"
SERIOUS = ("serious", "critical")
# Bounds, not waits: a loaded 2-core machine (argon2id hashing, the whole platform, Chromium) can take seconds
# per step; every expectation polls until it holds or the bound runs out.
STEP_TIMEOUT_MS = 30_000
expect.set_options(timeout=STEP_TIMEOUT_MS)


@dataclass
class Platform:
    gateway: str
    admin: dict[str, str]
    merchant_id: str
    keys: dict[str, str] = field(default_factory=dict)  # demo-keys.json: the merchant's signing key too
    sandboxes: dict[str, str] = field(default_factory=dict)  # name → base URL


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    with data_dir_outside_pytest("juhe-web-") as data_dir:
        ports = {name: free_port() for name in [*SERVICES, *FRONTENDS, *SANDBOXES]}

        def env(ports: dict[str, int]) -> dict[str, str]:
            # The bank decides payouts only after an hour: a withdrawal's hold stays pending while the test looks.
            web = f"http://127.0.0.1:{ports['web']}"
            return {"JUHE_GATEWAY_WEB_URL": web, "JUHE_SANDBOX_BANK_PROCESS_SECONDS": "3600"}

        proc, _ = _start_running(data_dir, ports, env)
        web_url = f"http://127.0.0.1:{ports['web']}"
        web: ServiceProcess | None = None
        try:
            gateway = f"http://127.0.0.1:{ports['gateway']}"
            if not _answers(web_url):  # a launcher that does not run the web process yet: start it here
                settings = {"port": ports["web"], "gateway_url": gateway}
                web = ServiceProcess(FRONTENDS["web"], settings, log_dir=data_dir / "logs")
                web.start()
            keys = json.loads((data_dir / "demo-keys.json").read_text())
            sandboxes = {name: f"http://127.0.0.1:{ports[name]}" for name in SANDBOXES}
            yield Platform(
                gateway, {"Authorization": f"Bearer {keys['admin_key']}"}, keys["merchant_id"], keys, sandboxes
            )
        finally:
            if web is not None:
                web.stop()
            _stop(proc)
            logs = ARTIFACTS / "logs"
            shutil.rmtree(logs, ignore_errors=True)
            shutil.copytree(data_dir / "logs", logs, dirs_exist_ok=True)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/livez", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is missing: `make install` installs it (docs/web.md)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


def _write(gw: str, headers: dict[str, str], method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    r = httpx.request(
        method,
        gw + path,
        json=body or {},
        timeout=30,
        headers={**headers, "Idempotency-Key": f"web-test-{uuid.uuid4().hex}"},
    )
    assert r.status_code in (200, 201, 202), f"{method} {path}: {r.text}"
    return r.json()


def a_user_with_a_wallet(platform: Platform) -> str:
    """What the platform's app and operators did before: user, verified holder, money, points, a bill."""
    gw, admin = platform.gateway, platform.admin
    user_id = f"usr_web_{uuid.uuid4().hex[:8]}"
    _write(gw, admin, "POST", "/v1/platform/users", {"name": NAME, "user_id": user_id})
    _write(
        gw,
        admin,
        "POST",
        "/v1/wallet/holders",
        {
            "holder_id": user_id,
            "holder_type": "person",
            "name": NAME,
            "resident_id": resident_id(),
            "phone": "13800138000",
            "bank_card": CARD,
        },
    )
    _write(gw, admin, "POST", f"/v1/wallet/holders/{user_id}/kyc")
    eventually(
        lambda: (
            httpx.get(f"{gw}/v1/wallet/holders/{user_id}", headers=admin, timeout=10).json()["kyc_status"] == "verified"
        ),
        "the identity sandbox's verdict",
    )
    top_up = {"payment_id": f"pay_web_{uuid.uuid4().hex[:8]}", "amount_minor": 100_000, "channel": "wechatpay"}
    _write(gw, admin, "POST", f"/v1/wallet/holders/{user_id}/top-ups", top_up)
    fund_escrow(Gateway(gw, admin["Authorization"].split(" ", 1)[1]), 100_000)  # the channel settled it (§3.5)
    _write(
        gw, admin, "POST", f"/v1/wallet/holders/{user_id}/points/grants", {"grant_id": f"pg_{user_id}", "points": 500}
    )
    _write(gw, admin, "PUT", f"/v1/wallet/holders/{user_id}/credit-line", {"limit_minor": 50_000})
    bnpl = {
        "payment_id": f"pay_web_{uuid.uuid4().hex[:8]}",
        "merchant_id": platform.merchant_id,
        "amount_minor": 8_000,
        "subaccount_type": "credit",
    }
    _write(gw, admin, "POST", f"/v1/wallet/holders/{user_id}/payments", bnpl)
    _write(gw, admin, "POST", f"/v1/wallet/holders/{user_id}/bills", {"period": "202611"})
    return user_id


def sign_in_link(platform: Platform, user_id: str) -> str:
    link = _write(platform.gateway, platform.admin, "POST", f"/v1/platform/users/{user_id}/wallet-sign-in-links")
    assert link["url"].startswith(platform.gateway + "/wallet/sign-in?token=wsl_")
    return str(link["url"])


def check_accessibility(page: Page, name: str) -> None:
    """axe-core on the page as shown; a screenshot kept for people to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    results = Axe().run(page)
    serious = [v for v in results.response["violations"] if v.get("impact") in SERIOUS]
    assert not serious, f"{name}: " + results.generate_report()


def reload_until(page: Page, selector: str, text: str, what: str, seconds: float = 120.0) -> None:
    """Bounded polling of a server-rendered value (the page has no live update for balances)."""

    def shown() -> bool:
        if page.locator(selector).inner_text() == text:
            return True
        page.reload()
        return False

    eventually_sync(shown, what, timeout_seconds=seconds, poll_seconds=0.5)


def test_a_user_runs_their_wallet_from_the_page(platform: Platform, browser: Browser) -> None:
    user_id = a_user_with_a_wallet(platform)
    context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})  # a phone first
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()

    # --- sign in by the one-time link; the link does not work twice ----------------------------------------
    link = sign_in_link(platform, user_id)
    page.goto(link)
    check_accessibility(page, "01-sign-in-zh")
    page.get_by_role("button", name="进入我的钱包").click()
    expect(page).to_have_url(re.compile(r"/wallet\?done=signed_in$"))
    expect(page.get_by_role("status")).to_contain_text("登录成功")
    expect(page.locator("#available")).to_have_text("¥1,000.00")
    expect(page.locator("#points")).to_have_text("500")
    expect(page.get_by_text("202611 账单")).to_be_visible()
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["juhe_session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    check_accessibility(page, "02-wallet-zh")
    other = browser.new_page(locale="zh-CN")
    other.set_default_timeout(STEP_TIMEOUT_MS)
    other.goto(link)
    other.get_by_role("button", name="进入我的钱包").click()
    expect(other.get_by_role("heading", level=1)).to_have_text("请从 App 登录")  # used once already
    other.close()

    # --- set the payment PIN, then change it -----------------------------------------------------------------
    page.get_by_role("link", name="设置支付密码").first.click()
    check_accessibility(page, "03-pin-set-zh")
    page.get_by_label("新密码", exact=True).fill("246813")
    page.get_by_label("再次输入新密码").fill("246813")
    page.get_by_role("button", name="设置密码").click()
    expect(page.get_by_role("status")).to_contain_text("支付密码已设置")
    page.get_by_role("link", name="修改支付密码").click()
    page.get_by_label("当前密码").fill("246813")
    page.get_by_label("新密码", exact=True).fill("135792")
    page.get_by_label("再次输入新密码").fill("135792")
    check_accessibility(page, "04-pin-change-zh")
    page.get_by_role("button", name="修改密码").click()
    expect(page.get_by_role("status")).to_contain_text("支付密码已修改")

    # --- withdraw 300: the hold shows; repay the bill; exchange points ----------------------------------------
    page.locator("#wd-amount").fill("300")
    page.locator("#wd-pin").fill("135792")
    page.get_by_role("button", name="提现", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("提现已提交")
    expect(page.locator("#on-hold")).to_have_text("¥300.00")
    expect(page.locator("#available")).to_have_text("¥700.00")
    check_accessibility(page, "05-withdrawal-held-zh")
    page.locator("#repay-amount-1").fill("80")
    page.locator("#repay-pin-1").fill("135792")
    page.get_by_role("button", name="还款").click()
    expect(page.get_by_role("status")).to_contain_text("还款成功")
    expect(page.locator("#available")).to_have_text("¥620.00")
    page.locator("#px-points").fill("100")
    page.locator("#px-pin").fill("135792")
    page.get_by_role("button", name="兑换", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("积分已兑换")
    expect(page.locator("#points")).to_have_text("400")
    expect(page.locator("#available")).to_have_text("¥621.00")

    # --- history with a filter ---------------------------------------------------------------------------
    page.get_by_role("link", name="全部记录").click()
    page.get_by_label("收支").select_option("debit")
    page.get_by_role("button", name="查看").click()
    rows = page.locator("tbody tr")
    expect(rows.first).to_be_visible()
    assert all("−" in text for text in rows.all_inner_texts()), rows.all_inner_texts()
    expect(page.locator("tbody")).to_contain_text("提现")
    check_accessibility(page, "06-history-zh")

    # --- zh/en switch keeps the page ---------------------------------------------------------------------
    page.get_by_role("link", name="English").click()
    expect(page).to_have_url(re.compile(r"/wallet/history\?.*direction=debit.*lang=en"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Activity")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    check_accessibility(page, "07-history-en")
    page.get_by_role("link", name="Back to My Wallet").click()
    expect(page.locator("#available")).to_have_text("CN¥621.00")  # the choice is remembered (cookie)
    check_accessibility(page, "08-wallet-en")

    # --- five wrong PINs in a row lock it ----------------------------------------------------------------
    for attempt in range(5):
        page.locator("#wd-amount").fill("1")
        page.locator("#wd-pin").fill(f"90000{attempt}")
        page.get_by_role("button", name="Withdraw", exact=True).click()
        expected = "locked" if attempt == 4 else "Wrong payment PIN"
        expect(page.get_by_role("status")).to_contain_text(expected)
        if attempt < 4:
            expect(page.locator("#wd-pin")).to_be_visible()
    expect(page.get_by_text("your payment PIN is locked for 24 hours").first).to_be_visible()
    expect(page.locator("#wd-pin")).to_have_count(0)  # no PIN form while locked
    expect(page.locator("#on-hold")).to_have_text("CN¥300.00")  # nothing else was withdrawn
    check_accessibility(page, "09-locked-en")
    page.get_by_role("link", name="中文").click()
    check_accessibility(page, "10-locked-zh")

    # --- top-up: an H5 order paid on the channel's page (the sandbox's payer approves), then credited ------
    page.locator("#tu-amount").fill("50")
    page.get_by_role("button", name="充值", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("充值 ¥50.00")
    check_accessibility(page, "10b-top-up-zh")
    page.get_by_role("link", name="去付款").click()
    page.get_by_role("button", name=re.compile("Approve")).click()  # the channel sandbox's payer
    page.goto(f"{platform.gateway}/wallet")
    reload_until(page, "#available", "¥671.00", "the top-up to be credited")

    # --- a forged form (no CSRF token) is refused and changes nothing ------------------------------------
    forged = page.request.post(f"{platform.gateway}/wallet/withdraw", form={"amount": "1", "pin": "135792"})
    assert forged.status == 403

    # --- sign out: the session cookie and the gateway token both end -------------------------------------
    page.get_by_role("button", name="退出登录").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("您已退出登录")
    page.goto(f"{platform.gateway}/wallet")
    expect(page.get_by_role("heading", level=1)).to_have_text("请从 App 登录")
    check_accessibility(page, "11-signed-out-zh")
    context.close()


def test_the_read_path_works_without_javascript(platform: Platform, browser: Browser) -> None:
    user_id = a_user_with_a_wallet(platform)
    context = browser.new_context(java_script_enabled=False, locale="en-US", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    page.goto(sign_in_link(platform, user_id))
    expect(page.locator("html")).to_have_attribute("lang", "en")  # Accept-Language: en-US
    page.get_by_role("button", name="Continue to My Wallet").click()
    expect(page.locator("#available")).to_have_text("CN¥1,000.00")
    expect(page.get_by_role("heading", name="Recent activity")).to_be_visible()
    expect(page.locator("tbody")).to_contain_text("Top-up")
    page.get_by_role("link", name="All activity").click()
    expect(page.locator("tbody")).to_contain_text("Top-up")
    page.get_by_role("link", name="中文").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("账单明细")
    page.screenshot(path=str(ARTIFACTS / "12-history-desktop-nojs-zh.png"), full_page=True)
    context.close()
