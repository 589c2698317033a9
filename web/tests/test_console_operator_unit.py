"""The operator console's templates and helpers without a platform: every page renders in both languages with
answers shaped like the services' (the simulator's, the exceptions pool's, the health endpoint's), forms carry the
session's CSRF token, no inline script or style, every label translated; the route-health chart's geometry."""

from __future__ import annotations

from typing import Any

import pytest

from web import i18n
from web.app import templates
from web.console import audit_summary
from web.pages.console_operator import (
    BASE,
    CHART_WIDTH,
    SAVINGS_CHART_WIDTH,
    calendar_weeks,
    savings_bars,
    success_bars,
)

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
        "standing": {"status": "active", "suspended": True, "suspension_reason": "KYC expired"},
        "channels": [
            {"channel": "wechatpay", "mode": "test", "priority": 1, "enabled": True, "version": 3},
            {"channel": "wechatpay", "mode": "live", "priority": 2, "enabled": False, "version": 1},
        ],
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
        "payouts": [
            {
                "payout_id": "po_1",
                "holder_id": "mch_demo",
                "amount_minor": 500_000,
                "currency": "CNY",
                "status": "pending_approval",
                "decided_by": None,
                "decision_reason": None,
            },
            {
                "payout_id": "po_2",
                "holder_id": "mch_demo",
                "amount_minor": 600_000,
                "currency": "CNY",
                "status": "rejected",
                "decided_by": "ops@juhe.test",
                "decision_reason": "Account not verified",
            },
        ],
        "request_id": "r1",
        "payouts_next": None,
        "consistency": {"ok": True, "checked_at": NOW, "mismatches": []},
    },
    "kyc": {
        "request_id": "r1",
        "held": [
            {
                "onboarding_id": "onb_02",
                "merchant_id": "mch_held",
                "status": "processing",
                "created_at": NOW,
                "steps": {"kyc": {"status": "pending", "last_error": {"code": "kyc_in_review"}}},
            }
        ],
        "next_cursor": None,
        "items": [
            {
                "onboarding_id": "onb_01",
                "merchant_id": "mch_new",
                "status": "rejected",
                "created_at": NOW,
                "steps": {
                    "identity": {"status": "active", "reasons": []},
                    "kyc": {
                        "status": "rejected",
                        "reasons": [{"code": "licence_invalid", "detail": "check character", "field": "licence"}],
                    },
                },
            }
        ],
    },
    "calendar": {
        "month": "2026-11",
        "holder_id": "mch_demo",
        "today": "2026-11-24",
        "around": {"previous": "2026-10", "next": "2026-12"},
        "schedule": {
            "month": "2026-11",
            "holder_id": "mch_demo",
            "cycle": {"holder_id": "mch_demo", "kind": "t_plus", "days": 1, "weekday": 0, "cutoff": "22:00:00"},
        },
        "weeks": calendar_weeks(
            [
                {"day": "2026-11-24", "business_day": True, "name": "", "settle_date": "2026-11-26"},
                {"day": "2026-11-25", "business_day": False, "name": "holiday", "settle_date": "2026-11-27"},
            ]
        ),
    },
    "savings": {
        "merchant_id": "",
        "chart_width": SAVINGS_CHART_WIDTH,
        "bar_height": 22,
        "report": {
            "currency": "CNY",
            "example_catalogue": True,
            "payment_count": 7,
            "volume_minor": 96_703,
            "fees_minor": 531,
            "best_savings_minor": 93,
            "merchants_without_profile": ["mch_demo"],
        },
        "merchants": [
            {
                "merchant_id": "mch_kiosk",
                "payment_count": 3,
                "volume_minor": 24_333,
                "fees_minor": 146,
                "best_savings_minor": 53,
                "programmes": [
                    {
                        "programme_id": "ali_micro_merchant",
                        "method": "alipay",
                        "payment_count": 2,
                        "volume_minor": 21_000,
                        "fees_minor": 126,
                        "projected_fees_minor": 80,
                        "savings_minor": 46,
                    }
                ],
            }
        ],
        "bars": savings_bars([{"merchant_id": "mch_kiosk", "best_savings_minor": 53}]),
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
    "onboarding": {
        "entity_types": ["company", "individual"],
        "channels": ["alipay"],
        "cycles": ["t_plus:1"],
        "request_id": "r1",
        "form": {"legal_name": "杭州茶馆有限公司", "entity_type": "individual", "channel_config": '{"app_id": "1"}'},
        "refused": ["legal_representative.id_number"],
    },
    "onboarding_status": {
        "onboarding": {
            "onboarding_id": "onb_01",
            "merchant_id": "mch_tea",
            "status": "processing",
            "steps": {
                "identity": {"status": "verified", "reasons": []},
                "kyc": {"status": "pending", "reasons": [], "last_error": {"code": "kyc_in_review"}},
            },
        },
        "steps": [
            ("identity", {"status": "verified", "reasons": []}),
            ("kyc", {"status": "pending", "reasons": [], "last_error": {"code": "kyc_in_review"}}),
        ],
        "credentials": {"api_key": {"key_id": "key_test_1", "secret": "sk_test_s"}, "webhook_secret": "whsec_w"},
    },
    "special_rates": {
        "merchant_id": "mch_school",
        "request_id": "r1",
        "entity_types": ["company", "individual"],
        "profile": {"merchant_id": "mch_school", "entity_type": "company", "industry_code": "8211", "version": 1},
        "programmes": {
            "wx_education": {
                "programme_id": "wx_education",
                "channel": "wechatpay",
                "name": "Education",
                "name_zh": "教育",
                "rate_bps": 20,
                "cap_minor": None,
                "example": True,
                "required_documents": ["business_licence", "school_operating_permit"],
            },
            "ali_canteen": {
                "programme_id": "ali_canteen",
                "channel": "alipay",
                "name": "Canteen",
                "name_zh": "食堂",
                "rate_bps": 0,
                "cap_minor": 500,
                "example": True,
                "required_documents": [],
            },
        },
        "eligibility": [
            {"programme_id": "wx_education", "eligible": True, "reasons": []},
            {"programme_id": "ali_canteen", "eligible": False, "reasons": ["industry_code"]},
        ],
        "applications": [
            {
                "application_id": "spa_1",
                "programme_id": "wx_education",
                "status": "submitted",
                "documents": ["a"],
                "effective_from": None,
                "effective_until": None,
                "rate_ids": [],
                "rejection_reason": None,
            },
            {
                "application_id": "spa_2",
                "programme_id": "wx_education",
                "status": "approved",
                "documents": ["a"],
                "effective_from": NOW,
                "effective_until": NOW,
                "rate_ids": ["fr_9"],
                "rejection_reason": None,
            },
            {
                "application_id": "spa_3",
                "programme_id": "wx_education",
                "status": "draft",
                "documents": [],
                "effective_from": None,
                "effective_until": None,
                "rate_ids": [],
                "rejection_reason": None,
            },
        ],
        "next_cursor": None,
    },
    "wallets": {
        "holder_id": "u_1",
        "wallet": {
            "holder": {
                "holder_id": "u_1",
                "holder_type": "individual",
                "name": "张*",
                "kyc_status": "verified",
                "kyc_reason": None,
                "kyc_level": 2,
                "document_number_masked": "1101**********002X",
                "phone_masked": "138****8000",
                "bank_card_masked": None,
                "created_at": NOW,
            },
            "subaccounts": [
                {
                    "account_id": "acc_b",
                    "subaccount_type": "balance",
                    "merchant_id": None,
                    "currency": "CNY",
                    "status": "active",
                    "balances": {"posted_balance_minor": 1_000, "available_balance_minor": 900},
                },
                {
                    "account_id": "acc_p",
                    "subaccount_type": "points",
                    "merchant_id": None,
                    "currency": "XXX",
                    "status": "frozen",
                    "balances": {"posted_balance_minor": 120, "available_balance_minor": 120},
                },
            ],
            "recent": [
                {
                    "created_at": NOW,
                    "operation": "top_up",
                    "kind": "posted",
                    "direction": "in",
                    "amount_minor": 1_000,
                    "currency": "CNY",
                }
            ],
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
        locale=locale,
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
    assert "划付已批准" in render("settlement", "zh_CN", done="payout_approved")


def test_a_suspended_merchant_offers_resumption_and_an_active_one_suspension() -> None:
    html = render("merchants", "en")
    assert "Suspended: KYC expired" in html and 'action="/console/operator/merchants/mch_demo/resume"' in html
    active = render("merchants", "zh_CN", standing={"status": "active", "suspended": False})
    assert 'action="/console/operator/merchants/mch_demo/suspend"' in active and "暂停商户" in active


def test_the_kyc_queue_shows_each_refused_step_with_its_reasons_and_a_retry() -> None:
    html = render("kyc", "en")
    assert "licence_invalid (licence) — check character" in html
    assert 'action="/console/operator/kyc/onb_01/retry"' in html and "<strong>identity</strong>" not in html


def test_a_held_payout_offers_approve_and_reject_with_a_reason() -> None:
    html = render("settlement", "en")
    assert 'action="/console/operator/payouts/po_1/approve"' in html
    assert 'action="/console/operator/payouts/po_1/reject"' in html and 'id="reason-po_1"' in html
    assert "/console/operator/payouts/po_2/" not in html  # decided: nothing to do
    assert "ops@juhe.test: Account not verified" in html


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


def test_calendar_weeks_start_on_monday_and_savings_bars_scale_to_the_largest() -> None:
    days = [{"day": f"2026-11-{d:02d}"} for d in range(1, 31)]  # 1 November 2026 is a Sunday
    weeks = calendar_weeks(days)
    assert len(weeks) == 6 and all(len(w) == 7 for w in weeks)
    assert weeks[0][:6] == [None] * 6 and weeks[0][6] == {"day": "2026-11-01"}
    assert weeks[5][0] == {"day": "2026-11-30"} and weeks[5][1:] == [None] * 6
    assert calendar_weeks([]) == []
    bars = savings_bars(
        [{"merchant_id": "a", "best_savings_minor": 40}, {"merchant_id": "b", "best_savings_minor": 10}]
    )
    assert [(b.label, b.value, b.width) for b in bars] == [("a", 40, SAVINGS_CHART_WIDTH), ("b", 10, 75.0)]
    assert savings_bars([{"merchant_id": "a", "best_savings_minor": 0}])[0].width == 0


def test_audit_summary_names_the_compared_fields() -> None:
    before = {"rate_id": "fr_1", "rate_bps": 30, "version": 2, "min_fee_minor": 0}
    assert audit_summary(before) == "rate_id=fr_1, rate_bps=30"
    assert audit_summary(None) == ""
    request = {
        "request_id": "crq_1",
        "payment_id": "pay_1",
        "amount_minor": 600,
        "currency": "CNY",
        "status": "pending",
        "requested_by": "stf_1",
        "reason": "",
    }
    assert audit_summary(request) == "payment_id=pay_1, amount_minor=600, currency=CNY, status=pending"


def test_every_console_query_parameter_is_read_by_its_own_name() -> None:
    """A `Query` object shared between parameters makes them all read the first one's name (the ledger page's
    `account_id` read `merchant_id`, the calendar's `holder_id` too): every console route's query parameters are
    read by their own names, except the `…_text` ones aliased on purpose (`from`, `to`, `day`)."""
    from fastapi.routing import APIRoute

    from web.app import create_app
    from web.config import Settings

    wrong = [
        (route.path, param.name, param.alias)
        for route in create_app(Settings()).routes
        if isinstance(route, APIRoute) and route.path.startswith("/console")
        for param in route.dependant.query_params
        if param.alias != param.name and not param.name.endswith("_text")
    ]
    assert not wrong, wrong


def test_special_rates_offer_each_applications_next_step_and_only_eligible_programmes() -> None:
    html = render("special_rates", "en")
    assert 'action="/console/operator/special-rates/applications/spa_1/approve"' in html
    assert 'action="/console/operator/special-rates/applications/spa_1/reject"' in html
    assert 'action="/console/operator/special-rates/applications/spa_3/submit"' in html
    assert "/spa_2/" not in html and "fr_9" in html  # approved: its rates, nothing to do
    assert 'name="doc.school_operating_permit"' in html and 'value="ali_canteen"' not in html
    assert "No: industry_code" in html and 'action="/console/operator/special-rates/profile"' in html
    assert "教育" in render("special_rates", "zh_CN")


def test_a_wallet_holder_shows_kyc_and_sub_accounts_and_points_are_not_money() -> None:
    html = render("wallets", "en")
    assert '<dd id="kyc-level">2</dd>' in html and "verified" in html
    assert "¥10.00" in html and "¥9.00" in html and ">120<" in html
    assert 'href="/console/operator/ledger?account_id=acc_b"' in html


def test_the_ledger_says_the_instant_of_a_balance_and_typed_times_are_china_times() -> None:
    from datetime import datetime

    from web.pages.console_operator import CHINA, parse_instant

    html = render("ledger", "en", as_of_at=datetime(2026, 12, 5, 8, 0, tzinfo=CHINA))
    assert 'data-as-of="2026-12-05T08:00:00+08:00"' in html and "As of" in html
    assert 'data-as-of="now"' in render("ledger", "en")
    assert parse_instant("2026-12-05T08:00") == datetime(2026, 12, 5, 8, 0, tzinfo=CHINA)
    assert parse_instant("2026-12-05T00:00:00+00:00") == datetime.fromisoformat("2026-12-05T08:00:00+08:00")
    assert parse_instant("yesterday") is None and parse_instant("") is None
    assert "时间" in render("ledger", "zh_CN", failure="time_invalid", balance=None)


def test_operators_read_the_special_rate_catalogue_through_the_gateway() -> None:
    from gateway.domain import staff as roles

    assert roles.api_permission("GET", "/v1/special-rate-programmes") == "platform.merchants.read"
    assert roles.api_permission("POST", "/v1/special-rate-applications/spa_1/approve") == "platform.merchants.manage"


def test_the_onboarding_form_keeps_what_was_typed_and_names_the_refused_fields() -> None:
    html = render("onboarding", "en")
    assert 'value="杭州茶馆有限公司"' in html and "{&#34;app_id&#34;: &#34;1&#34;}" in html
    assert '<option value="individual" selected>' in html
    assert "legal_representative.id_number" in html and 'action="/console/operator/onboarding"' in html
    status = render("onboarding_status", "en")
    assert 'data-status="processing"' in status and "held for review" in status
    assert '<code id="api-key-secret">sk_test_s</code>' in status
    assert "sk_test_s" not in render("onboarding_status", "en", credentials=None)


def test_the_onboarding_request_is_the_gateways_one_call_shape() -> None:
    from web.pages.console_operator import onboarding_request

    form = {
        "legal_name": " 杭州茶馆有限公司 ",
        "entity_type": "company",
        "industry_code": "5812",
        "business_licence_number": "91350100m000100y43",
        "representative_name": "张三",
        "representative_id_number": "11010519491231002x",
        "contact_name": "李四",
        "contact_email": "a@b.cn",
        "contact_phone": "13800138000",
        "account_name": "杭州茶馆有限公司",
        "account_number": "6222021234567890",
        "bank_name": "ICBC",
        "channel": "alipay",
        "route_id": "ali_direct",
        "sub_merchant_id": "2088",
        "channel_config": '{"app_id": "2021"}',
        "cycle": "d_plus:1",
        "platform_fee_rate_bps": "30",
        "key_mode": "test",
        "merchant_id": "",
        "display_name": "",
        "webhook_url": "",
    }
    body, bad = onboarding_request(form)
    assert bad is None and body is not None
    assert body["legal_name"] == "杭州茶馆有限公司" and body["business_licence_number"] == "91350100M000100Y43"
    assert body["legal_representative"] == {"name": "张三", "id_number": "11010519491231002X"}
    assert body["channels"] == [
        {"channel": "alipay", "route_id": "ali_direct", "sub_merchant_id": "2088", "config": {"app_id": "2021"}}
    ]
    assert body["settlement"] == {"cycle": {"kind": "d_plus", "days": 1}, "platform_fee_rate_bps": 30}
    assert not {"merchant_id", "display_name", "webhook_url"} & set(body)
    individual, _ = onboarding_request(form | {"entity_type": "individual"})
    assert individual is not None and "business_licence_number" not in individual
    assert onboarding_request(form | {"channel_config": "[1]"}) == (None, "channel_config")
    assert onboarding_request(form | {"channel_config": "{"}) == (None, "channel_config")
    assert onboarding_request(form | {"platform_fee_rate_bps": "10001"}) == (None, "platform_fee_rate_bps")
    assert onboarding_request(form | {"entity_type": "public_institution"}) == (None, "entity_type")


def test_the_kyc_queue_offers_a_decision_on_a_held_check_only() -> None:
    from web.pages.console_operator import held_for_review

    html = render("kyc", "en")
    assert html.count('action="/console/operator/kyc/onb_02/decision"') == 2 and 'id="kyc-why-onb_02"' in html
    assert "/console/operator/kyc/onb_01/decision" not in html  # refused, not held: it is retried instead
    assert held_for_review({"steps": {"kyc": {"status": "pending", "last_error": {"code": "kyc_in_review"}}}})
    assert not held_for_review({"steps": {"kyc": {"status": "pending", "last_error": {"code": "http_503"}}}})
    assert not held_for_review({"steps": {}})


def test_onboarding_steps_are_shown_in_the_order_they_run() -> None:
    from web.pages.console_operator import ordered_steps

    steps: dict[str, Any] = {"kyc": {}, "ledger": {}, "zeta": {}, "cashier": {}, "routing": {}, "identity": {}}
    stored = {"steps": steps}
    assert [name for name, _ in ordered_steps(stored)] == ["identity", "kyc", "ledger", "cashier", "routing", "zeta"]
    assert ordered_steps({}) == []


def test_a_contract_offers_the_switch_it_does_not_have() -> None:
    html = render("merchants", "en")
    assert 'action="/console/operator/merchants/mch_demo/contracts/wx_sp/disable"' in html
    off = render("merchants", "en", contracts=[{"route_id": "wx_sp", "sub_merchant_id": "s1", "enabled": False}])
    assert 'action="/console/operator/merchants/mch_demo/contracts/wx_sp/enable"' in off


def test_a_wallet_sub_account_offers_freeze_or_unfreeze() -> None:
    html = render("wallets", "en")
    assert 'action="/console/operator/wallets/u_1/accounts/acc_b/freeze"' in html
    assert 'action="/console/operator/wallets/u_1/accounts/acc_p/unfreeze"' in html
    assert "Frozen: the sub-account refuses" in render("wallets", "en", done="frozen")


def test_a_channel_configuration_offers_its_switch_and_priority_per_mode_and_no_secret() -> None:
    """The merchant page's channel rows (test and live side by side): the switch it does not have, a priority form;
    nothing of the configuration itself is shown or sent (the cashier's PATCH takes no secret)."""
    html = render("merchants", "en")
    assert 'action="/console/operator/merchants/mch_demo/channels/wechatpay/test/disable"' in html
    assert 'action="/console/operator/merchants/mch_demo/channels/wechatpay/live/enable"' in html
    assert 'action="/console/operator/merchants/mch_demo/channels/wechatpay/test/priority"' in html
    assert "config" not in html.split('id="ch-h"', 1)[1].split("</section>", 1)[0]
    assert "密钥未被改动" in render("merchants", "zh_CN", done="channel_changed")
