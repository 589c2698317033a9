"""Coupons redeemed online, every part a real process (`python -m deploy.launcher run`): marketing, the cashier
(through the gateway with the demo merchant's signed key), the WeChat Pay sandbox, the ledger and settlement.

- two payments racing for one coupon: one is created, the other refused `coupon_locked`, nothing created;
- the payer declines at the channel → the payment fails → marketing releases the coupon (it consumes the
  cashier's `payment.failed`);
- a payment succeeds → the coupon is used; the channel was asked for the discounted amount; the ledger posts
  the platform's share of the discount from 5201 marketing_expense to the merchant's 2201 (the merchant's
  share is contra-revenue: it simply collects less) and settlement's check agrees with the ledger;
- two partial refunds → the platform's subsidy goes back in proportion, the coupon returns on the full
  refund (the stock's rule); settlement still agrees;
- bad coupons (not yet valid, another merchant's, threshold not met, used) → marketing's stable codes,
  relayed by the cashier, nothing created;
- points: marketing's rule earns on the paid amount, reverses on a refund and spends them on a coupon
  exchanged for points (`marketing.points`); the ledger posts all three to the payer's points sub-account.
- top-up promotions (充值送): a promoted top-up's bonus lands in the wallet's bonus sub-account
  (`marketing.topups`) and a balance payment spends the cash first, then the bonus; a top-up refunded through
  the cashier takes only the unspent cash (the ledger holds it first) and its bonus is revoked.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk" / "python"))
from juhe_sdk import APIError, Client

from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.settings import DEMO_INTERNAL_TOKEN_SECRET
from tests.e2e.test_launcher import Launched, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # the first test may also wait for the launcher
ORDER = 12_000  # 满100减10 on a 120.00 order: 10.00 off, 3.00 of it funded by the platform
DISCOUNT, PLATFORM_PART, MERCHANT_PART = 1_000, 300, 700


@dataclass
class Platform:
    run: Launched
    merchant: Client
    merchant_id: str
    stock_id: str
    demo_user_id: str  # a user with a wallet (the launcher's seed): its points sub-account is in the ledger

    def marketing(
        self, method: str, path: str, *, user: str | None = None, service: bool = False, **body: Any
    ) -> httpx.Response:
        token = mint_identity_token(
            DEMO_INTERNAL_TOKEN_SECRET,
            key_id="e2e-marketing",
            user=user,
            service="cashier" if service and not user else None,
            platform="plt_demo" if not (user or service) else None,
        )
        return httpx.request(
            method,
            self.run.url("marketing") + path,
            json=body if method != "GET" else None,
            headers={IDENTITY_HEADER: token},
            timeout=30,
        )

    def stock(self, **overrides: Any) -> str:
        campaign = self.marketing("POST", "/v1/marketing/campaigns", name="Spring").json()
        body = {
            "campaign_id": campaign["campaign_id"],
            "name": "满100减10",
            "discount_kind": "fixed",
            "amount_off_minor": DISCOUNT,
            "threshold_minor": 10_000,
            "valid_days_after_claim": 30,
            "merchant_ids": [self.merchant_id],
            "funding_party": "shared",
            "platform_share_bps": 3000,
            "refund_policy": "return_on_full_refund",
            "budget_count": 50,
            "per_user_limit": 50,
            **overrides,
        }
        created = self.marketing("POST", "/v1/marketing/stocks", **body)
        assert created.status_code == 201, created.text
        started = self.marketing("POST", f"/v1/marketing/stocks/{created.json()['stock_id']}/start")
        assert started.status_code == 200, started.text
        return str(created.json()["stock_id"])

    def coupon(self, user_id: str, stock_id: str | None = None) -> str:
        claimed = self.marketing(
            "POST",
            "/v1/marketing/me/claims",
            user=user_id,
            stock_id=stock_id or self.stock_id,
            request_id=uuid.uuid4().hex,
        )
        assert claimed.status_code == 201, claimed.text
        return str(claimed.json()["coupon_id"])

    def coupon_status(self, user_id: str, coupon_id: str) -> str:
        return str(self.marketing("GET", f"/v1/marketing/me/coupons/{coupon_id}", user=user_id).json()["status"])

    def pay(
        self, user_id: str, coupon_id: str | None, amount_minor: int = ORDER, order_no: str | None = None, **coupon: Any
    ) -> Any:
        """A payment of the payer with its coupon (`coupon_id`, or `coupon_code=` its 16 digits), or without one."""
        named = coupon or ({"coupon_id": coupon_id} if coupon_id else {})
        return self.merchant.payments.create(
            merchant_order_no=order_no or f"cpn-{uuid.uuid4().hex[:12]}",
            amount_minor=amount_minor,
            currency="CNY",
            description="Spring order",
            scene="native_qr",
            preferred_channels=["wechatpay"],
            payer={"user_id": user_id},
            **named,
        )

    def wechat(self, action: str, payment: dict[str, Any]) -> None:
        out_trade_no = payment["attempts"][-1]["out_trade_no"]
        done = httpx.post(f"{self.run.url('wechatpay')}/control/orders/{out_trade_no}/{action}", timeout=10)
        assert done.status_code == 200, done.text

    def reaches(self, payment_id: str, status: str) -> dict[str, Any]:
        return dict(
            eventually(
                lambda: (p := self.merchant.payments.retrieve(payment_id))["status"] == status and p,
                f"payment {payment_id} to be {status}",
            )
        )

    def ledger_lines(self, idempotency_key: str) -> dict[tuple[str, str], int]:
        """{(account kind, direction): amount} of the cashier-sourced transfer with this key."""
        rows = self.run.query(
            "juhe_ledger",
            (
                "SELECT a.kind, e.direction, sum(e.posted_delta_minor) AS amount FROM entries e "
                "JOIN accounts a ON a.id = e.account_id JOIN transfers t ON t.id = e.transfer_id "
                f"WHERE t.source = 'cashier' AND t.idempotency_key = '{idempotency_key}' GROUP BY 1, 2"
            ),
        )
        return {(r["kind"], r["direction"]): int(r["amount"]) for r in rows}

    def points_balance(self, user_id: str) -> int:
        rows = self.run.query(
            "juhe_ledger",
            "SELECT credits_posted - debits_posted AS n FROM accounts "
            f"WHERE holder_id = '{user_id}' AND kind = 'user_points'",
        )
        return sum(int(r["n"]) for r in rows)

    def consistent(self) -> bool:
        """Settlement's own settlement ↔ ledger check, run now."""
        token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="e2e-marketing", platform="plt_demo")
        answer = httpx.post(
            f"{self.run.url('settlement')}/v1/settlement/consistency/runs", headers={IDENTITY_HEADER: token}, timeout=60
        )
        return answer.status_code == 200 and bool(answer.json().get("ok"))


@pytest.fixture(scope="module")
def platform(demo_platform: Launched) -> Platform:
    """The shared demo platform (its WeChat Pay refunds succeed after 1 s, its cashier polls every 1-2 s)
    with a stock of this module's own."""
    keys = json.loads((demo_platform.data_dir / "demo-keys.json").read_text())
    merchant = Client(demo_platform.url("gateway"), key_id=keys["key_id"], secret=keys["secret"])
    shell = Platform(demo_platform, merchant, keys["merchant_id"], "", keys["user_id"])
    shell.stock_id = shell.stock()
    return shell


def _user() -> str:
    return f"usr_{uuid.uuid4().hex[:12]}"


def _absent(merchant: Client, order_no: str) -> bool:
    """No payment exists for this merchant order number (the lookup answers an empty list)."""
    return list(merchant.payments.list(merchant_order_no=order_no)) == []


def _refused(call: Any) -> APIError:
    with pytest.raises(APIError) as refused:
        call()
    return refused.value


def test_two_payments_race_for_one_coupon_one_wins_and_a_failed_payment_releases_it(platform: Platform) -> None:
    user = _user()
    coupon = platform.coupon(user)
    order_nos = [f"race-{uuid.uuid4().hex[:10]}" for _ in range(2)]

    def attempt(order_no: str) -> Any:
        try:
            return platform.pay(user, coupon, order_no=order_no)
        except APIError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(attempt, order_nos))
    won = [o for o in outcomes if isinstance(o, dict)]
    lost = [o for o in outcomes if isinstance(o, APIError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert lost[0].code == "coupon_locked"
    loser_order = order_nos[outcomes.index(lost[0])]
    assert _absent(platform.merchant, loser_order)
    payment = won[0]
    assert (payment["amount_minor"], payment["payable_minor"], payment["discount_minor"]) == (
        ORDER,
        ORDER - DISCOUNT,
        DISCOUNT,
    )
    assert platform.coupon_status(user, coupon) == "locked"

    platform.wechat("decline", payment)  # the payer's payment fails at the channel
    platform.reaches(payment["id"], "failed")
    eventually(lambda: platform.coupon_status(user, coupon) == "available", "the coupon released")
    # The user can redeem it again, here naming it by the code it types at checkout.
    typed = platform.marketing("GET", f"/v1/marketing/me/coupons/{coupon}", user=user).json()["code"]
    again = platform.pay(user, None, coupon_code=typed)
    assert again["discount_minor"] == DISCOUNT and again["discount"]["coupon_id"] == coupon


def test_a_lock_left_by_a_create_that_died_is_released_by_the_merchants_retry(platform: Platform) -> None:
    user = _user()
    coupon = platform.coupon(user)
    # A create that died between marketing's lock and its own insert: a lock for a payment that never existed.
    ghost = platform.marketing(
        "POST",
        "/v1/internal/marketing/locks",
        service=True,
        payment_id=f"pay_{uuid.uuid4().hex}",
        coupon_id=coupon,
        user_id=user,
        merchant_id=platform.merchant_id,
        scene="native_qr",
        payment_method="wechatpay",
        order_amount_minor=ORDER,
    )
    assert ghost.status_code == 201, ghost.text
    order_no = f"retry-{uuid.uuid4().hex[:10]}"
    # Young: its creator may still be on its way to the insert, so it is left alone.
    assert _refused(lambda: platform.pay(user, coupon, order_no=order_no)).code == "coupon_locked"
    assert _absent(platform.merchant, order_no)
    platform.run.query(
        "juhe_marketing",
        "UPDATE redemptions SET created_at = now() - interval '10 minutes' "
        f"WHERE redemption_id = '{ghost.json()['redemption_id']}' RETURNING 1",
    )
    retried = platform.pay(user, coupon, order_no=order_no)  # the merchant's retry takes the orphan lock over
    assert retried["discount_minor"] == DISCOUNT and platform.coupon_status(user, coupon) == "locked"
    released = platform.marketing(
        "GET", f"/v1/internal/marketing/redemptions/{ghost.json()['redemption_id']}", service=True
    )
    assert released.json()["status"] == "released", released.text


def test_a_paid_coupon_is_used_funded_by_the_right_party_and_returned_on_full_refund(platform: Platform) -> None:
    user = _user()
    coupon = platform.coupon(user)
    payment = platform.pay(user, coupon)
    order = httpx.get(
        f"{platform.run.url('wechatpay')}/control/orders/{payment['attempts'][0]['out_trade_no']}", timeout=10
    ).json()["order"]
    assert order["amount"]["total"] == ORDER - DISCOUNT  # the channel is asked for the discounted amount
    platform.wechat("approve", payment)
    paid = platform.reaches(payment["id"], "succeeded")
    assert paid["discount"]["platform_minor"] == PLATFORM_PART and paid["refundable_minor"] == ORDER - DISCOUNT
    eventually(lambda: platform.coupon_status(user, coupon) == "used", "the coupon used")

    lines = eventually(lambda: platform.ledger_lines(f"{payment['id']}:succeeded"), "the ledger's posting")
    assert lines[("marketing_expense", "debit")] == PLATFORM_PART
    credited = lines[("merchant_pending", "credit")]
    fee_income = lines.get(("platform_fee_income", "credit"), 0)
    # The merchant gets what the channel collected plus the platform's subsidy, less the platform fee: its own
    # 7.00 of the discount is simply not collected.
    assert credited == ORDER - DISCOUNT + PLATFORM_PART - fee_income == ORDER - MERCHANT_PART - fee_income
    eventually(platform.consistent, "settlement to agree with the ledger after the discounted payment")

    # The coupon is used: another payment cannot redeem it; nothing is created.
    order_no = f"used-{uuid.uuid4().hex[:10]}"
    assert _refused(lambda: platform.pay(user, coupon, order_no=order_no)).code == "coupon_used"
    assert _absent(platform.merchant, order_no)

    first = platform.merchant.payments.refund(payment["id"], amount_minor=5_500)
    eventually(lambda: platform.merchant.refunds.retrieve(first["id"])["status"] == "succeeded", "refund 1")
    back = eventually(lambda: platform.ledger_lines(f"{first['id']}:succeeded"), "refund 1 posted")
    assert back[("marketing_expense", "credit")] == PLATFORM_PART // 2  # floor(300 × 5500 / 11000)
    assert platform.coupon_status(user, coupon) == "used"
    second = platform.merchant.payments.refund(payment["id"], amount_minor=ORDER - DISCOUNT - 5_500)
    eventually(lambda: platform.merchant.refunds.retrieve(second["id"])["status"] == "succeeded", "refund 2")
    back = eventually(lambda: platform.ledger_lines(f"{second['id']}:succeeded"), "refund 2 posted")
    assert back[("marketing_expense", "credit")] == PLATFORM_PART - PLATFORM_PART // 2  # the whole subsidy back
    eventually(lambda: platform.coupon_status(user, coupon) == "available", "the coupon returned on full refund")
    eventually(platform.consistent, "settlement to agree with the ledger after the refunds")


def test_bad_coupons_are_refused_with_marketing_codes_and_nothing_is_created(platform: Platform) -> None:
    user = _user()
    later = datetime.now(UTC) + timedelta(days=2)  # not valid yet: outside its validity period
    cases = {
        "coupon_expired": (
            platform.coupon(
                user,
                platform.stock(
                    valid_from=later.isoformat(),
                    valid_until=(later + timedelta(days=5)).isoformat(),
                    valid_days_after_claim=None,
                ),
            ),
            ORDER,
        ),
        "coupon_not_applicable": (platform.coupon(user, platform.stock(merchant_ids=["mch_someone_else"])), ORDER),
        "threshold_not_met": (platform.coupon(user), 9_999),
    }
    for expected, (coupon, amount) in cases.items():
        order_no = f"bad-{uuid.uuid4().hex[:10]}"
        refused = _refused(lambda c=coupon, a=amount, o=order_no: platform.pay(user, c, amount_minor=a, order_no=o))
        assert (refused.code, refused.status) == (expected, 422), (expected, refused)
        assert _absent(platform.merchant, order_no)
        assert platform.coupon_status(user, coupon) == "available"
    someone_else = _refused(lambda: platform.pay(_user(), cases["threshold_not_met"][0]))
    assert someone_else.code == "coupon_not_found"


def test_points_earned_partly_reversed_and_exchanged_match_the_wallet_points_subaccount(platform: Platform) -> None:
    user = platform.demo_user_id
    rule = platform.marketing(
        "POST", "/v1/marketing/points-rules", name="1 point per yuan", merchant_id=platform.merchant_id, currency="CNY"
    )
    assert rule.status_code == 201, rule.text
    before = platform.points_balance(user)
    payment = platform.pay(user, None)  # no coupon: the points rule earns on the whole amount
    platform.wechat("approve", payment)
    platform.reaches(payment["id"], "succeeded")
    eventually(lambda: platform.points_balance(user) == before + ORDER // 100, "120 points in the ledger")
    refund = platform.merchant.payments.refund(payment["id"], amount_minor=ORDER // 4)
    eventually(lambda: platform.merchant.refunds.retrieve(refund["id"])["status"] == "succeeded", "the refund")
    eventually(
        lambda: platform.points_balance(user) == before + ORDER // 100 - ORDER // 400,
        "a quarter of the points taken back",
    )
    offered = platform.stock(points_price=50)  # exchanged: the points leave the sub-account (points.exchanged)
    exchanged = platform.marketing(
        "POST", "/v1/marketing/me/points/exchanges", user=user, stock_id=offered, request_id=uuid.uuid4().hex
    )
    assert exchanged.status_code == 201, exchanged.text
    assert platform.coupon_status(user, exchanged.json()["coupon"]["coupon_id"]) == "available"
    eventually(
        lambda: platform.points_balance(user) == before + ORDER // 100 - ORDER // 400 - 50,
        "50 points spent on the coupon",
    )


def test_a_promoted_top_up_lands_a_bonus_apart_spent_after_the_cash_and_never_withdrawn(platform: Platform) -> None:
    """充值送 through the running platform: a promotion at marketing, a top-up paid at the WeChat Pay sandbox,
    marketing's worker grants the bonus (`marketing.topups`), the ledger's consumer credits the bonus
    sub-account, and a balance payment spends the cash first, then the bonus. Then a second promoted top-up is
    refunded through the cashier: more than the unspent cash is refused, the rest is refunded at the WeChat Pay
    sandbox, the ledger posts its hold, and marketing's revocation takes the bonus back (docs/marketing.md
    "Top-up refunds")."""
    created = platform.marketing(
        "POST",
        "/v1/marketing/topup-promotions",
        name="top up 100, get 10",
        tiers=[{"min_topup_minor": 10_000, "bonus_minor": 1_000}],
        budget_minor=100_000,
        per_holder_limit=10,
    )
    assert created.status_code == 201, created.text
    try:
        _spend_a_promoted_top_up(platform)
        _refund_a_promoted_top_up(platform)
    finally:  # the platform is shared: later top-ups (the wallet journey's) get no bonus
        ended = platform.marketing("POST", f"/v1/marketing/topup-promotions/{created.json()['promotion_id']}/end")
        assert ended.status_code == 200, ended.text


def _wallet_of(platform: Platform, user: str) -> Callable[[str], int]:
    def wallet(kind: str) -> int:
        rows = platform.run.query(
            "juhe_ledger",
            f"SELECT credits_posted - debits_posted AS n FROM accounts WHERE holder_id = '{user}' AND kind = '{kind}'",
        )
        return sum(int(r["n"]) for r in rows)

    return wallet


def _promoted_top_up(platform: Platform, user: str) -> dict[str, Any]:
    """A 100.00 top-up order paid at the WeChat Pay sandbox, once its 10.00 bonus is in the bonus sub-account."""
    token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="e2e-marketing", platform="plt_demo")
    wallet, ledger = _wallet_of(platform, user), platform.run.url("ledger")
    bonus_before = wallet("user_bonus")
    order = httpx.post(
        f"{ledger}/v1/wallet/holders/{user}/top-up-orders",
        headers={IDENTITY_HEADER: token},
        timeout=30,
        json={
            "amount_minor": 10_000,
            "scene": "jsapi",
            "payer": {"openid": "o_e2e_bonus"},
            "idempotency_key": uuid.uuid4().hex,
        },
    )
    assert order.status_code == 201, order.text
    platform.wechat("approve", order.json()["payment"])
    eventually(lambda: wallet("user_bonus") == bonus_before + 1_000, "the bonus in the wallet's bonus sub-account")
    return dict(order.json())


def _spend_a_promoted_top_up(platform: Platform) -> None:
    user, ledger = platform.demo_user_id, platform.run.url("ledger")
    token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="e2e-marketing", platform="plt_demo")
    headers = {IDENTITY_HEADER: token}
    wallet = _wallet_of(platform, user)
    bonus_before = wallet("user_bonus")
    order = _promoted_top_up(platform, user)
    cash = wallet("user_wallet")
    spend = {
        "payment_id": f"pay_bonus_{uuid.uuid4().hex[:8]}",
        "merchant_id": platform.merchant_id,
        "amount_minor": cash + 300,
    }
    paid = httpx.post(f"{ledger}/v1/wallet/holders/{user}/payments", headers=headers, json=spend, timeout=30)
    assert paid.status_code == 201, paid.text
    assert paid.json()["details"]["bonus_minor"] == 300
    assert (wallet("user_wallet"), wallet("user_bonus")) == (0, bonus_before + 700)  # the cash first
    grants = platform.marketing("GET", "/v1/marketing/me/topup-bonuses", user=user).json()["data"]
    assert [g["status"] for g in grants if g["payment_id"] == order["payment_id"]] == ["granted"]


def _refund_a_promoted_top_up(platform: Platform) -> None:
    user = platform.demo_user_id
    wallet = _wallet_of(platform, user)
    cash_before, bonus_before = wallet("user_wallet"), wallet("user_bonus")
    order = _promoted_top_up(platform, user)
    ledger, cashier = platform.run.url("ledger"), platform.run.url("cashier")
    spend = {"payment_id": f"pay_tr_{uuid.uuid4().hex[:8]}", "merchant_id": platform.merchant_id, "amount_minor": 3_000}
    token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="e2e-marketing", platform="plt_demo")
    paid = httpx.post(
        f"{ledger}/v1/wallet/holders/{user}/payments", headers={IDENTITY_HEADER: token}, json=spend, timeout=30
    )
    assert paid.status_code == 201, paid.text
    # The collecting merchant refunds the top-up (as an operator acting for it would, through the gateway).
    collector = mint_identity_token(
        DEMO_INTERNAL_TOKEN_SECRET, key_id="e2e-marketing", platform="plt_demo", merchant_id=order["merchant_id"]
    )
    refunds = f"{cashier}/v1/payments/{order['payment_id']}/refunds"
    unspent = cash_before + 7_000
    over = httpx.post(refunds, json={"amount_minor": 10_000}, headers={IDENTITY_HEADER: collector}, timeout=30)
    assert (over.status_code, over.json()["code"]) == (409, "refund_exceeds_balance"), over.text
    assert over.json()["available_minor"] == unspent
    take = min(unspent, 10_000)
    refund = httpx.post(refunds, json={"amount_minor": take}, headers={IDENTITY_HEADER: collector}, timeout=30)
    assert refund.status_code == 201, refund.text
    eventually(lambda: wallet("user_wallet") == unspent - take, "the refund's hold posted by the ledger")
    eventually(lambda: wallet("user_bonus") == bonus_before, "the bonus revoked by marketing, taken back by the ledger")
    grants = platform.marketing("GET", "/v1/marketing/me/topup-bonuses", user=user).json()["data"]
    assert [g["status"] for g in grants if g["payment_id"] == order["payment_id"]] == ["revoked"]
    hold = platform.run.query(
        "juhe_ledger",
        "SELECT status FROM wallet_operations WHERE kind = 'top_up_refund' "
        f"AND idempotency_key = '{refund.json()['id']}'",
    )
    assert [r["status"] for r in hold] == ["posted"]
