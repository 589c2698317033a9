"""The operator console's templates and helpers without a platform: every page renders in both languages with
answers shaped like the services' (the simulator's, the exceptions pool's, the health endpoint's), forms carry the
session's CSRF token, no inline script or style, every label translated; the route-health chart's geometry."""

from __future__ import annotations

from typing import Any

import pytest

from web import i18n
from web.app import templates
from web.console import audit_summary
from web.pages.console_operator import BASE, CHART_WIDTH, success_bars

CSRF = "csrf-token-of-the-session"
NOW = "2026-12-06T08:00:00+00:00"
ITEM: dict[str, Any] = {
    "item_id": 7,
    "outcome": "amount_mismatch",
    "state": "assigned",
    "merchant_id": "mch_demo",
    "channel": "wechatpay",
    "bill_date": "2026-12-06",
    "merchant_order_no": "o-1",
    "key": "o-1",
    "payment_id": "pay_1",
    "juhe_amount_minor": 4000,
    "channel_amount_minor": 3999,
    "juhe_status": "succeeded",
    "channel_status": "SUCCESS",
    "ageing": "under_1d",
    "assignee": "ops@juhe.test",
    "last_requery": {"status": "succeeded", "late_success": False},
    "resolution_reason": None,
    "actions": [{"action": "assigned", "actor": "ops@juhe.test", "at": NOW, "detail": {}}],
}
KEPT = {
    "rank": 1,
    "route_id": "wx_sp",
    "circuit_state": "closed",
    "fee": {"fee_minor": 38},
    "explanation": "cheapest",
    "special_rate": {"application_id": "spa_1", "programme_id": "wx_education"},
}
PAGES: dict[str, dict[str, Any]] = {
    "overview": {},
    "merchants": {
        "merchant_id": "mch_demo",
        "merchant": {"merchant_id": "mch_demo", "notify_url": None},
        "channels": [{"channel": "wechatpay", "priority": 1, "enabled": True}],
        "contracts": [{"route_id": "wx_sp", "sub_merchant_id": "s1", "enabled": True}],
        "rates": [{"rate_id": "fr_1", "route_id": "wx_sp", "rate_bps": 38, "valid_from": NOW, "valid_until": None}],
        "request_id": "r1",
    },
    "routing": {
        "routes": [{"route_id": "wx_sp", "method": "wechat", "provider": "wechatpay", "enabled": True}],
        "health": [
            {
                "route_id": "wx_sp",
                "circuit": {"state": "closed"},
                "success_rate_estimate": 0.9,
                "attempts": 10,
                "volume_today_minor": 100,
            }
        ],
        "bars": success_bars([{"route_id": "wx_sp", "circuit": {"state": "open"}, "success_rate_estimate": 0.5}]),
        "rates": [],
        "chart_width": CHART_WIDTH,
        "bar_height": 22,
    },
    "simulate": {
        "question": {
            "merchant_id": "mch_demo",
            "amount": "100",
            "scene": "native_qr",
            "payer_client": "other",
            "methods": ["wechat"],
        },
        "methods_all": ["wechat", "alipay"],
        "scenes": ["native_qr"],
        "payer_clients": ["other"],
        "answer": {
            "outcome": "routed",
            "chosen": {
                "route_id": "wx_sp",
                "fee_minor": 38,
                "rate_bps": 38,
                "method": "wechat",
                "explanation": "cheapest",
            },
            "methods": [
                {
                    "method": "wechat",
                    "outcome": "routed",
                    "kept": [KEPT],
                    "dropped": [{"route_id": "wx_direct", "reason": "circuit_open", "explanation": "open"}],
                }
            ],
        },
    },
    "settlement": {
        "holder_id": "",
        "status": "",
        "batches": [],
        "payouts": [],
        "payouts_next": None,
        "consistency": {"ok": True, "checked_at": NOW, "mismatches": []},
    },
    "reconciliation": {
        "items": [ITEM],
        "next_cursor": "7",
        "state": "unresolved",
        "mine": False,
        "merchant_id": "",
        "states": ["unresolved"],
    },
    "exception": {"item": ITEM, "request_id": "r1"},
    "ledger": {
        "holder_id": "",
        "account_id": "acc_1",
        "as_of": "",
        "accounts": [],
        "balance": {"currency": "CNY", "balances": {"posted_balance_minor": 100}},
        "statement": {
            "entries": [{"created_at": NOW, "reference": "t1", "posted_delta_minor": 100, "currency": "CNY"}],
            "next_cursor": None,
        },
    },
    "audit": {
        "merchant_id": "",
        "next_cursor": None,
        "entries": [
            {
                "at": NOW,
                "actor_email": "ops@juhe.test",
                "action": "fee_rate.changed",
                "target": "fr_1",
                "before_text": "rate_bps=30",
                "after_text": "rate_bps=25",
            }
        ],
    },
    "health": {
        "health": {
            "all_ready": False,
            "consumer_lag": [{"group": "juhe-ledger-cashier", "lag": 3}],
            "services": [
                {
                    "service": "ledger",
                    "ready": False,
                    "checks": {"broker": "error"},
                    "outbox_backlog": None,
                    "dead_letters": None,
                }
            ],
        }
    },
}


class Ctx:
    def can(self, permission: str) -> bool:
        return True


def render(name: str, locale: str, **extra: Any) -> str:
    env = templates()
    env.install_gettext_translations(i18n.load_catalogues()[locale], newstyle=True)  # type: ignore[attr-defined]
    nav = [{"href": BASE, "permission": "platform.dashboard.read", "label": "Overview", "current": True}]
    member = {"email": "ops@juhe.test", "role": "operations", "kind": "operator"}
    return env.get_template(f"console/operator_{name}.html").render(
        page=type("P", (), {"lang_links": lambda self: []})(),
        html_lang="en",
        csrf=CSRF,
        ctx=Ctx(),
        member=member,
        nav=nav,
        money=lambda minor, currency="CNY": i18n.money(minor, currency, locale),
        number=lambda v: i18n.number(v, locale),
        when=lambda v: i18n.when(v, locale),
        **PAGES[name] | extra,
    )


@pytest.mark.parametrize("name", sorted(PAGES))
@pytest.mark.parametrize("locale", ["zh_CN", "en"])
def test_every_operator_page_renders_strictly(name: str, locale: str) -> None:
    html = render(name, locale)
    assert "style=" not in html and "<script>" not in html
    for form in html.split("<form")[1:]:
        method = form.split(">", 1)[0]
        if 'method="post"' in method:
            assert f'name="csrf" value="{CSRF}"' in form
    if locale == "zh_CN":
        assert "运营后台" in html


def test_a_failure_and_an_outcome_are_said_by_code() -> None:
    assert "平台未响应" in render("health", "zh_CN", failure="unavailable", health=None)
    assert "已处理" in render("exception", "zh_CN", done="resolved")
    # In the status line styled like every other page's outcome (the merchant console's and the wallet's).
    assert '<p class="ok">已处理。</p>' in render("exception", "zh_CN", done="resolved")
    assert '<p class="err">Say why it is resolved' in render("exception", "en", error="reason_required")


def test_success_bars_scale_to_the_chart_and_carry_the_circuit() -> None:
    bars = success_bars(
        [
            {"route_id": "a", "circuit": {"state": "closed"}, "success_rate_estimate": 1.0},
            {"route_id": "b", "circuit": {"state": "open"}, "success_rate_estimate": 0.25},
            {"route_id": "c", "circuit": None, "success_rate_estimate": None},
        ]
    )
    assert [(b.label, b.width, b.state) for b in bars] == [
        ("a", CHART_WIDTH, "closed"),
        ("b", CHART_WIDTH / 4, "open"),
        ("c", 0.0, "unknown"),
    ]
    assert [b.y for b in bars] == [0, 30, 60]


def test_audit_summary_names_the_compared_fields() -> None:
    before = {"rate_id": "fr_1", "rate_bps": 30, "version": 2, "min_fee_minor": 0}
    assert audit_summary(before) == "rate_id=fr_1, rate_bps=30"
    assert audit_summary(None) == ""
    request = {"request_id": "crq_1", "payment_id": "pay_1", "amount_minor": 600, "currency": "CNY",
               "status": "pending", "requested_by": "stf_1", "reason": ""}  # fmt: skip
    assert audit_summary(request) == "payment_id=pay_1, amount_minor=600, currency=CNY, status=pending"
