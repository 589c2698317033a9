"""The consoles without a platform (seconds): the documented role matrix is the gateway's, every console route names
a known permission, the dashboard's figures are exact integer arithmetic, the guard refuses before any call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.domain import staff as roles
from web.app import create_app
from web.config import Settings
from web.console import PUBLIC, REGISTRY, SIGNED_IN, console_sealer, declared_routes
from web.pages.console_merchant import amount_query, dashboard_figures, reconcile_day
from web.sessions import Sealer, Session

DOCS = Path(__file__).resolve().parents[2] / "docs" / "consoles.md"


def documented_matrix(console: str) -> dict[str, set[str]]:
    """role → permissions, from the table in docs/consoles.md between `<!-- matrix:<console> -->` and the end."""
    text = DOCS.read_text()
    block = text.split(f"<!-- matrix:{console} -->", 1)[1].split("<!-- /matrix -->", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.strip().splitlines()]
    roles = rows[0][1:]
    matrix: dict[str, set[str]] = {role: set() for role in roles}
    for row in rows[2:]:
        for role, cell in zip(roles, row[1:], strict=True):
            if cell == "✓":
                matrix[role].add(row[0])
    return matrix


def test_the_documented_matrix_is_the_gateways() -> None:
    assert documented_matrix("merchant") == {role: set(perms) for role, perms in roles.MERCHANT_ROLES.items()}
    assert documented_matrix("operator") == {role: set(perms) for role, perms in roles.PLATFORM_ROLES.items()}


def test_every_console_route_is_registered_with_a_known_permission() -> None:
    paths = declared_routes(create_app(Settings()))
    assert ("GET", "/console/merchant/payments") in paths and paths <= set(REGISTRY), sorted(paths - set(REGISTRY))
    known = {*roles.MERCHANT_PERMISSIONS, *roles.PLATFORM_PERMISSIONS, PUBLIC, SIGNED_IN}
    assert all(rule.permission in known for rule in REGISTRY.values()), [
        r for r in REGISTRY.values() if r.permission not in known
    ]


def test_the_api_map_refuses_what_staff_never_do() -> None:
    assert roles.api_permission("GET", "/v1/payments/pay_1") == "payments.read"
    assert roles.api_permission("POST", "/v1/payments/pay_1/refunds") == "refunds.create"
    assert roles.api_permission("POST", "/v1/payments") is None  # staff never create payments
    assert roles.api_permission("POST", "/v1/payments/pay_1/close") is None
    assert roles.api_permission("POST", "/v1/payouts") == "payouts.create"
    assert roles.api_permission("POST", "/v1/webhook-deliveries/whd_1/resend") == "webhooks.resend"
    assert roles.api_permission("GET", "/v1/webhook-deliveries/whd_1") == "payments.read"
    assert roles.api_permission("GET", "/v1/payments/aggregates") == "payments.read"
    assert roles.api_permission("POST", "/v1/settlement/payouts/po_1/approve") == "platform.settlement.manage"
    assert roles.api_permission("GET", "/v1/settlement/calendar/schedule") == "platform.settlement.read"
    assert roles.api_permission("GET", "/v1/special-rate-savings") == "platform.routing.read"
    assert roles.api_permission("GET", "/v1/platform/merchants/x") is None
    assert roles.api_permission("GET", "/v1/settlement/reconciliation-items") == "platform.reconciliation.read"


def test_dashboard_figures_are_exact() -> None:
    today = date(2026, 12, 6)
    rows: list[dict[str, Any]] = [
        {
            "day": "2026-12-06",
            "channel": "alipay",
            "status": "succeeded",
            "count": 1,
            "amount_minor": 1_001,
            "refunded_minor": 1,
            "platform_fee_minor": 4,
        },
        {
            "day": "2026-12-03",
            "channel": "alipay",
            "status": "failed",
            "count": 1,
            "amount_minor": 500,
            "refunded_minor": 0,
            "platform_fee_minor": 0,
        },
        {
            "day": "2026-11-10",
            "channel": "wechatpay",
            "status": "succeeded",
            "count": 1,
            "amount_minor": 7,
            "refunded_minor": 0,
            "platform_fee_minor": 0,
        },
        {
            "day": "2026-12-06",
            "channel": None,
            "status": "pending",
            "count": 1,
            "amount_minor": 9,
            "refunded_minor": 0,
            "platform_fee_minor": 0,
        },
    ]
    figures = dashboard_figures(rows, today=today)
    today_w, week, month = figures["windows"]
    assert (today_w["count"], today_w["volume_minor"], today_w["success_permille"]) == (2, 1_001, 1000)
    assert (week["count"], week["volume_minor"], week["success_permille"]) == (3, 1_001, 500)
    assert (month["count"], month["volume_minor"], month["success_permille"], month["fee_minor"]) == (4, 1_008, 666, 4)
    assert month["by_channel"]["alipay"] == {"volume_minor": 1_001, "count": 2, "succeeded": 1, "refunded_minor": 1}
    assert dict(figures["daily"])[date(2026, 11, 10)] == 7 and len(figures["daily"]) == 30
    # 100,000 payments of one day in one row: the same arithmetic, exact.
    big: list[dict[str, Any]] = [
        {
            "day": "2026-12-06",
            "channel": "wechatpay",
            "status": "succeeded",
            "count": 100_000,
            "amount_minor": 123_456_789_00,
            "refunded_minor": 0,
            "platform_fee_minor": 74_074_07,
        }
    ]
    assert dashboard_figures(big, today=today)["windows"][0]["volume_minor"] == 123_456_789_00


def test_amount_search_is_exact_or_a_range_in_minor_units() -> None:
    assert amount_query("", "", "") == {}
    assert amount_query("12.34", "", "") == {"amount_minor": 1_234}
    assert amount_query("12.34", "1", "2") == {"amount_minor": 1_234}  # exact wins over a range beside it
    assert amount_query("", "10", "") == {"amount_minor_gte": 1_000}
    assert amount_query("", "10", "20.5") == {"amount_minor_gte": 1_000, "amount_minor_lte": 2_050}
    assert amount_query("", "", "0.01") == {"amount_minor_lte": 1}
    for bad in (("12.345", "", ""), ("abc", "", ""), ("", "-1", ""), ("", "0", ""), ("", "20", "10")):
        assert amount_query(*bad) is None, bad


def test_reconciliation_of_a_day_lists_what_differs() -> None:
    day = date(2026, 12, 5)
    at = "2026-12-05T02:00:00+00:00"  # 10:00 in China on the 5th
    late = "2026-12-05T17:00:00+00:00"  # 01:00 in China on the 6th: another day
    payments = [
        {
            "id": "pay_a",
            "status": "succeeded",
            "succeeded_at": at,
            "amount_minor": 1_000,
            "channel": "alipay",
            "currency": "CNY",
            "merchant_order_no": "A",
        },
        {
            "id": "pay_b",
            "status": "succeeded",
            "succeeded_at": at,
            "amount_minor": 250,
            "channel": "alipay",
            "currency": "CNY",
            "merchant_order_no": "B",
        },
        {
            "id": "pay_c",
            "status": "succeeded",
            "succeeded_at": at,
            "amount_minor": 700,
            "channel": "wechatpay",
            "currency": "CNY",
            "merchant_order_no": "C",
        },
        {
            "id": "pay_d",
            "status": "succeeded",
            "succeeded_at": late,
            "amount_minor": 5,
            "channel": "alipay",
            "currency": "CNY",
            "merchant_order_no": "D",
        },
    ]
    row = {"currency": "CNY", "refunded_minor": "0", "succeeded_at": at, "settle_date": "2026-12-06"}
    rows = [
        {
            **row,
            "payment_id": "pay_a",
            "merchant_order_no": "A",
            "channel": "alipay",
            "status": "succeeded",
            "amount_minor": "1000",
            "platform_fee_minor": "6",
        },
        {
            **row,
            "payment_id": "pay_b",
            "merchant_order_no": "B",
            "channel": "alipay",
            "status": "succeeded",
            "amount_minor": "205",
            "platform_fee_minor": "1",
        },
        {
            **row,
            "payment_id": "pay_e",
            "merchant_order_no": "E",
            "channel": "wechatpay",
            "status": "succeeded",
            "amount_minor": "90",
            "platform_fee_minor": "",
        },
        {
            **row,
            "payment_id": "pay_f",
            "merchant_order_no": "F",
            "channel": "alipay",
            "status": "closed",
            "amount_minor": "90",
            "platform_fee_minor": "",
        },
    ]
    result = reconcile_day(day, payments, rows)
    assert result["channels"] == [
        {
            "channel": "alipay",
            "currency": "CNY",
            "count": 2,
            "total_minor": 1_250,
            "stated_count": 2,
            "stated_total_minor": 1_205,
            "fee_minor": 7,
        },
        {
            "channel": "wechatpay",
            "currency": "CNY",
            "count": 1,
            "total_minor": 700,
            "stated_count": 1,
            "stated_total_minor": 90,
            "fee_minor": 0,
        },
    ]
    assert [(d["payment_id"], d["kind"]) for d in result["differences"]] == [
        ("pay_b", "amount_differs"),
        ("pay_c", "not_in_statement"),
        ("pay_e", "not_at_juhe"),
    ]
    assert result["matched"] == 1


@pytest.fixture
async def pages() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(gateway_url="http://127.0.0.1:9", cookie_secure=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pages") as client:
            yield client


async def test_the_guard_refuses_before_calling_anyone(pages: httpx.AsyncClient) -> None:
    r = await pages.get("/console/merchant/payments")
    assert (r.status_code, r.headers["location"]) == (303, "/console/sign-in?reason=no_session")
    assert (await pages.post("/console/merchant/payouts", data={"amount": "1"})).status_code == 401
    assert (await pages.post("/console/sign-in", data={"email": "a@b.c", "password": "x"})).status_code == 403
    # A wallet cookie is not a console cookie (another key): still not signed in.
    key = Settings().session_key.get_secret_value()
    wallet = Sealer(key).seal(Session("usr_1", "utk_1.x", 4e9, 4e9, "c"))
    pages.cookies.set("juhe_console", wallet)
    r = await pages.get("/console/merchant")
    assert r.status_code == 303
    assert console_sealer(key).open(wallet) is None


def test_a_payout_held_for_approval_is_said_so() -> None:
    from web import i18n
    from web.app import templates

    env = templates()
    env.install_gettext_translations(i18n.load_catalogues()["zh_CN"], newstyle=True)  # type: ignore[attr-defined]
    html = env.get_template("console/merchant_payouts.html").render(
        page=type("P", (), {"lang_links": lambda self: []})(),
        html_lang="zh-CN",
        csrf="c",
        nav=[],
        done="payout_held",
        ctx=type("C", (), {"can": lambda self, p: False})(),
        member={"kind": "merchant", "email": "f@x", "role": "finance"},
        money=lambda minor, currency="CNY": i18n.money(minor, currency, "zh_CN"),
        items=[],
        settled_minor=0,
        number=lambda v: i18n.number(v, "zh_CN"),
        when=lambda v: i18n.when(v, "zh_CN"),
    )
    assert "需平台审批" in html


# ---- the pages of issue 16's second part: webhooks, balances, payment links, coupons, postings -------------------
def test_a_payment_link_form_becomes_the_cashiers_body_in_minor_units() -> None:
    from datetime import UTC, datetime

    from web.pages.console_merchant import link_draft

    now = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    fixed = link_draft(
        {
            "description": "Parking",
            "amount_kind": "fixed",
            "amount": "12.30",
            "single_use": "1",
            "field_plate_number": "1",
            "expires": "2026-12-31T18:00",
        },
        now=now,
    )
    assert fixed == {
        "currency": "CNY",
        "description": "Parking",
        "payer_fields": ["plate_number"],
        "amount_minor": 1230,
        "max_uses": 1,
        "expires_at": "2026-12-31T18:00:00+08:00",
    }
    entered = link_draft(
        {"description": "Tips", "amount_kind": "payer", "amount_min": "1", "amount_max": "200"}, now=now
    )
    assert entered is not None and (entered["amount_min_minor"], entered["amount_max_minor"]) == (100, 20_000)
    assert "max_uses" not in entered and "amount_minor" not in entered
    for bad in (
        {"description": "", "amount_kind": "fixed", "amount": "1"},
        {"description": "x", "amount_kind": "fixed", "amount": "1.234"},
        {"description": "x", "amount_kind": "payer", "amount_min": "9", "amount_max": "2"},
        {"description": "x", "amount_kind": "fixed", "amount": "1", "expires": "2026-12-01T00:00"},
        {"description": "x", "amount_kind": "fixed", "amount": "1", "expires": "tomorrow"},
    ):
        assert link_draft(bad, now=now) is None, bad


def test_a_stock_form_is_merchant_funded_and_a_till_code_or_qr_is_told_apart() -> None:
    from web.pages.console_merchant import coupon_code, stock_draft

    stock = stock_draft(
        {"name": "5 off", "amount_off": "5", "threshold": "30", "budget_count": "100", "valid_days": "7"}
    )
    assert stock == {
        "name": "5 off",
        "discount_kind": "fixed",
        "currency": "CNY",
        "amount_off_minor": 500,
        "threshold_minor": 3000,
        "valid_days_after_claim": 7,
        "funding_party": "merchant",
        "budget_count": 100,
    }
    assert stock_draft({"name": "x", "amount_off": "0", "budget_count": "1", "valid_days": "1"}) is None
    assert stock_draft({"name": "x", "amount_off": "1", "budget_count": "0", "valid_days": "1"}) is None
    # Percent off: basis points and the cap in minor units (marketing requires the cap); 100 % or more is no coupon.
    base = {"name": "12.5% off", "discount_kind": "percent", "budget_count": "10", "valid_days": "30"}
    percent = stock_draft({**base, "percent_off": "12.5", "discount_cap": "20", "amount_off": "5"})
    assert percent is not None and {
        k: percent.get(k)
        for k in ("discount_kind", "percent_off_bps", "discount_cap_minor", "amount_off_minor", "funding_party")
    } == {
        "discount_kind": "percent",
        "percent_off_bps": 1250,
        "discount_cap_minor": 2000,
        "amount_off_minor": None,
        "funding_party": "merchant",
    }
    for bad in (
        {"percent_off": "100", "discount_cap": "20"},
        {"percent_off": "0", "discount_cap": "20"},
        {"percent_off": "12.345", "discount_cap": "20"},
        {"percent_off": "15"},
        {"percent_off": "15", "discount_cap": "0"},
        {"percent_off": "-5", "discount_cap": "20"},
    ):
        assert stock_draft({**base, **bad}) is None, bad
    assert coupon_code(" 1234 5678 9012 3456 ") == {"code": "1234567890123456"}
    assert coupon_code("JUHECPN1:1234567890123456") == {"qr_payload": "JUHECPN1:1234567890123456"}
    assert coupon_code("<script>") is None and coupon_code("ab") is None


def test_the_new_pages_api_calls_need_their_permissions() -> None:
    assert roles.api_permission("POST", "/v1/webhook-endpoints/we_1/rotate-secret") == "webhooks.manage"
    assert roles.api_permission("GET", "/v1/webhook-endpoints") == "webhooks.manage"
    assert roles.api_permission("GET", "/v1/payment-links") == "payments.read"
    assert roles.api_permission("POST", "/v1/payment-links/pl_1/deactivate") == "payment_links.manage"
    assert roles.api_permission("GET", "/v1/wallet/merchants/mch_1/balances") == "statements.read"
    assert roles.api_permission("GET", "/v1/wallet/holders/u_1") == "platform.wallets.read"  # operators' unchanged
    assert roles.api_permission("POST", "/v1/marketing/stocks/cps_1/pause") == "coupons.manage"
    assert roles.api_permission("POST", "/v1/marketing/in-store/redemptions") == "coupons.redeem"
    assert roles.api_permission("GET", "/v1/marketing/in-store/redemptions") is None
    assert roles.api_permission("POST", "/v1/marketing/me/claims") is None  # a payer's, never staff's
    assert (
        "coupons.redeem" in roles.MERCHANT_ROLES["support"] and "webhooks.manage" not in roles.MERCHANT_ROLES["support"]
    )


NEW_PAGES: dict[str, dict[str, Any]] = {
    "webhooks": {
        "endpoints": [
            {
                "id": "we_1",
                "url": "https://shop.example/hook",
                "description": "orders",
                "enabled_events": ["*"],
                "enabled": True,
                "livemode": False,
                "previous_secret_expires_at": None,
            }
        ],
        "event_types": ("payment.succeeded",),
        "overlaps": (0, 86400),
        "secret": {"id": "we_1", "secret": "whsec_x"},
    },
    "endpoint": {
        "endpoint": {"id": "we_1", "url": "https://shop.example/hook", "enabled": True, "enabled_events": ["*"]},
        "items": [
            {
                "id": "whd_1",
                "event_type": "payment.succeeded",
                "payment_id": "pay_1",
                "status": "failed",
                "attempt_count": 3,
                "last_status_code": 500,
                "last_error": None,
            }
        ],
        "shown": {
            "id": "whd_1",
            "event_type": "payment.succeeded",
            "attempts": [
                {
                    "attempt_no": 1,
                    "attempted_at": "2026-12-06T10:00:00+00:00",
                    "status_code": 500,
                    "error": None,
                    "duration_ms": 12,
                }
            ],
        },
    },
    "balances": {
        "mode": "test",
        "figures": {
            "currency": "CNY",
            "pending_minor": 1234,
            "settled_minor": 500,
            "available_to_withdraw_minor": 500,
            "payout_in_transit_minor": 100,
        },
    },
    "payment_links": {
        "items": [
            {
                "id": "pl_1",
                "url": "http://x/pay/pl_1",
                "poster_url": "http://x/pay/pl_1/poster.svg",
                "description": "Parking",
                "amount_minor": None,
                "amount_min_minor": 1,
                "amount_max_minor": 5000,
                "currency": "CNY",
                "uses_completed": 1,
                "max_uses": 1,
                "expires_at": None,
                "status": "active",
                "livemode": False,
            }
        ],
        "payer_fields": ("plate_number",),
    },
    "coupons": {
        "stocks": [
            {
                "stock_id": "cps_1",
                "campaign_id": "cmp_1",
                "name": "5 off",
                "amount_off_minor": 500,
                "percent_off_bps": None,
                "threshold_minor": 0,
                "currency": "CNY",
                "status": "draft",
            },
            {
                "stock_id": "cps_2",
                "campaign_id": "cmp_1",
                "name": "15% off",
                "amount_off_minor": None,
                "percent_off_bps": 1250,
                "discount_cap_minor": 2000,
                "threshold_minor": 0,
                "currency": "CNY",
                "status": "running",
            },
        ],
        "stats": {
            "cmp_1": {
                "issued_count": 3,
                "claimed_count": 2,
                "redeemed_count": 1,
                "cost": {"merchant_minor": 500, "platform_minor": 0},
            }
        },
    },
    "redeem": {
        "refused": "used",
        "redemption": {
            "redemption_id": "red_1",
            "order_amount_minor": 3000,
            "discount_minor": 500,
            "payable_minor": 2500,
            "currency": "CNY",
        },
    },
}


@pytest.mark.parametrize("locale", ["zh_CN", "en"])
@pytest.mark.parametrize("name", sorted(NEW_PAGES))
def test_the_new_pages_render_with_csrf_in_every_form_in_both_languages(name: str, locale: str) -> None:
    import re

    from web import i18n
    from web.app import templates

    env = templates()
    env.install_gettext_translations(i18n.load_catalogues()[locale], newstyle=True)  # type: ignore[attr-defined]
    html = env.get_template(f"console/merchant_{name}.html").render(
        page=type("P", (), {"lang_links": lambda self: []})(),
        html_lang=locale,
        csrf="csrf-of-the-session",
        nav=[],
        ctx=type("C", (), {"can": lambda self, p: True})(),
        request_id="0" * 24,
        member={"kind": "merchant", "email": "o@x", "role": "owner"},
        money=lambda minor, currency="CNY": i18n.money(minor, currency, locale),
        number=lambda v: i18n.number(v, locale),
        when=lambda v: i18n.when(v, locale),
        **NEW_PAGES[name],
    )
    forms = re.findall(r"<form method=\"post\".*?</form>", html, flags=re.S)
    assert forms and all('name="csrf" value="csrf-of-the-session"' in f for f in forms), name
    assert not re.search(r"<script(?![^>]*\bsrc=)", html) and " style=" not in html  # no inline script or style
    if locale == "zh_CN":
        assert not re.search(r">(Pending|Webhooks|Payment links|Coupons|Redeem a coupon|Deactivate|Start)<", html)


def _merchant_page(name: str, **values: Any) -> str:
    """A merchant console template rendered in English as the route would, permissions all granted."""
    from web import i18n
    from web.app import templates

    env = templates()
    env.install_gettext_translations(i18n.load_catalogues()["en"], newstyle=True)  # type: ignore[attr-defined]
    return env.get_template(f"console/merchant_{name}.html").render(
        page=type("P", (), {"lang_links": lambda self: []})(),
        html_lang="en",
        csrf="c",
        nav=[],
        ctx=type("C", (), {"can": lambda self, p: True})(),
        request_id="0" * 24,
        member={"kind": "merchant"},
        money=lambda minor, currency="CNY": i18n.money(minor, currency, "en"),
        number=str,
        when=str,
        **values,
    )


def test_links_and_endpoints_pages_are_in_one_mode_and_their_forms_carry_it() -> None:
    """The live / test switch: every form of the page posts the page's mode, so a link or endpoint is made (and the
    list after it shown) in the mode the member was looking at."""
    import re

    for name in ("payment_links", "webhooks"):
        html = _merchant_page(name, **{**NEW_PAGES[name], "mode": "live"})
        forms = [f for f in re.findall(r"<form method=\"post\".*?</form>", html, flags=re.S) if "sign-out" not in f]
        assert forms and all('name="mode" value="live"' in f for f in forms), name
        assert re.search(r'href="[^"]*\?mode=live" aria-current="page"', html), name
    coupons = _merchant_page("coupons", **NEW_PAGES["coupons"])
    assert "12.5% (at most CN¥20.00)" in coupons
    assert 'action="/console/merchant/coupons/cps_2/end"' in coupons
    assert 'action="/console/merchant/coupons/cps_1/end"' in coupons
