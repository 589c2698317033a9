"""Channel coupon mirroring end to end, every part a real process (the shared demo platform): marketing creates a
campaign's stock at the WeChat Pay / Alipay sandbox through the cashier (the one holder of channel credentials),
sends a coupon to the user there, the user pays with it at the channel, the channel's signed callback (WeChat
`COUPON.USE`, AES-256-GCM; Alipay `alipay.marketing.activity.message.used`) reaches the cashier's notify URL and
marketing marks the coupon used; the payment's `channel_discount` is posted by the ledger (docs/ledger.md §3.15).
Every callback is delivered twice (the sandbox's `duplicate_notifications`): the replay changes nothing. The daily
comparison finds nothing, then the use of a coupon whose callback never came (injected at the sandbox).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.settings import DEMO_INTERNAL_TOKEN_SECRET
from tests.e2e.test_launcher import Launched, eventually
from tests.e2e.test_marketing_coupons import Platform, _user

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
ORDER, COUPON, THRESHOLD = 3_000, 500, 1_000


@dataclass
class Mirror:
    platform: Platform
    channels: dict[str, Any]  # the demo merchant's channel configs (demo-channels.json)

    @property
    def run(self) -> Launched:
        return self.platform.run

    def as_merchant(self, method: str, path: str, **body: Any) -> httpx.Response:
        token = mint_identity_token(
            DEMO_INTERNAL_TOKEN_SECRET, key_id="e2e-mirror", merchant_id=self.platform.merchant_id
        )
        return httpx.request(
            method,
            self.run.url("marketing") + path,
            json=body if method != "GET" else None,
            headers={IDENTITY_HEADER: token},
            timeout=60,
        )

    def channel_stock(self, channel: str, **overrides: Any) -> httpx.Response:
        """A merchant's stock mirrored at `channel`, started: the answer of its start."""
        campaign = self.as_merchant("POST", "/v1/marketing/campaigns", name=f"Mirror {channel}").json()
        body = {
            "campaign_id": campaign["campaign_id"],
            "name": "满10减5",
            "discount_kind": "fixed",
            "amount_off_minor": COUPON,
            "threshold_minor": THRESHOLD,
            "funding_party": "merchant",
            "budget_count": 5,
            "valid_until": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
            "channel": channel,
            **overrides,
        }
        created = self.as_merchant("POST", "/v1/marketing/stocks", **body)
        assert created.status_code == 201, created.text
        return self.as_merchant("POST", f"/v1/marketing/stocks/{created.json()['stock_id']}/start")

    def running_stock(self, channel: str) -> dict[str, Any]:
        started = self.channel_stock(channel)
        assert started.status_code == 200 and started.json()["status"] == "running", started.text
        return dict(started.json())

    def created_again(self, stock_id: str) -> bool:
        """Marketing's stored create request sent to the cashier again (as a start after a crash between the
        channel's answer and marketing's commit does) is answered with the stock the channel already created."""
        row = self.run.query(
            "juhe_marketing", f"SELECT request, channel_stock_id FROM channel_stocks WHERE stock_id = '{stock_id}'"
        )[0]
        request = json.loads(row["request"]) if isinstance(row["request"], str) else row["request"]
        token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="e2e-mirror", service="marketing")
        answer = httpx.post(
            f"{self.run.url('cashier')}/v1/internal/channel-coupons/stocks",
            json=request,
            headers={IDENTITY_HEADER: token},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        return bool(answer.json()["channel_stock_id"] == row["channel_stock_id"])

    def claim(self, user: str, stock_id: str, channel_user: str, request_id: str = "first") -> httpx.Response:
        return self.platform.marketing(
            "POST",
            "/v1/marketing/me/claims",
            user=user,
            stock_id=stock_id,
            request_id=request_id,
            channel_user=channel_user,
        )

    def coupon(self, user: str, coupon_id: str) -> dict[str, Any]:
        return dict(self.platform.marketing("GET", f"/v1/marketing/me/coupons/{coupon_id}", user=user).json())

    def events_stored(self, channel_coupon_id: str) -> list[dict[str, Any]]:
        return self.run.query(
            "juhe_marketing",
            f"SELECT kind, applied_at FROM channel_coupon_events WHERE channel_coupon_id = '{channel_coupon_id}'",
        )

    def pay(self, channel: str) -> dict[str, Any]:
        payment = self.platform.merchant.payments.create(
            merchant_order_no=f"mir-{uuid.uuid4().hex[:12]}",
            amount_minor=ORDER,
            currency="CNY",
            description="Mirror order",
            scene="native_qr",
            preferred_channels=[channel],
        )
        return dict(payment)

    def comparison(self) -> dict[str, Any]:
        today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
        answer = self.as_merchant("GET", f"/v1/marketing/channel-comparisons?date={today}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def posted_to_merchant(self, payment_id: str) -> int:
        """What the payment's ledger transfer credits the merchant, platform fee added back."""
        lines = eventually(lambda: self.platform.ledger_lines(f"{payment_id}:succeeded"), "the ledger's posting")
        return lines[("merchant_pending", "credit")] + lines.get(("platform_fee_income", "credit"), 0)


@pytest.fixture(scope="module")
def mirror(demo_platform: Launched) -> Mirror:
    keys = json.loads((demo_platform.data_dir / "demo-keys.json").read_text())
    from juhe_sdk import Client  # on sys.path through test_marketing_coupons

    merchant = Client(demo_platform.url("gateway"), key_id=keys["key_id"], secret=keys["secret"])
    channels = json.loads((demo_platform.data_dir / "demo-channels.json").read_text())[keys["merchant_id"]]
    platform = Platform(demo_platform, merchant, keys["merchant_id"], "", keys["user_id"])
    # The app's message gateway (应用网关, set in Alipay's console): the gateway's notify URL, routed to the cashier.
    gateway = f"{demo_platform.url('gateway')}/v1/notify/coupons/alipay_voucher/{keys['merchant_id']}"
    answer = httpx.post(
        f"{demo_platform.url('alipay')}/control/apps/{channels['alipay']['app_id']}/message-gateway",
        json={"url": gateway},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return Mirror(platform, channels)


@pytest.fixture
def replayed(mirror: Mirror) -> Iterator[None]:
    """Every sandbox callback delivered twice (the same event again, after it was acknowledged)."""
    for sandbox in ("wechatpay", "alipay"):
        httpx.put(f"{mirror.run.url(sandbox)}/control/faults", json={"duplicate_notifications": True}, timeout=10)
    yield
    for sandbox in ("wechatpay", "alipay"):
        httpx.put(f"{mirror.run.url(sandbox)}/control/faults", json={"duplicate_notifications": False}, timeout=10)


def test_a_wechat_stock_from_a_campaign_its_coupon_sent_used_and_the_callback_applied_once(
    mirror: Mirror, replayed: None
) -> None:
    later = datetime.now(UTC) + timedelta(days=400)  # WeChat: a stock begins at most 365 days ahead
    refused = mirror.channel_stock(
        "wechatpay_favor", valid_from=later.isoformat(), valid_until=(later + timedelta(days=30)).isoformat()
    )
    assert (refused.status_code, refused.json()["code"]) == (422, "channel_refused"), refused.text
    assert refused.json()["channel_code"] == "PARAM_ERROR"

    stock = mirror.running_stock("wechatpay_favor")
    assert mirror.created_again(stock["stock_id"])  # what a start after a crash before our commit would get
    user, openid = _user(), f"oMirror{uuid.uuid4().hex[:16]}"
    claimed = mirror.claim(user, stock["stock_id"], openid)
    assert claimed.status_code == 201, claimed.text
    sent = claimed.json()["channel"]
    assert sent["send_status"] == "sent" and sent["channel_coupon_id"], claimed.text
    again = mirror.claim(user, stock["stock_id"], openid)  # the same claim: the same coupon, nothing sent twice
    assert again.status_code == 200 and again.json()["channel"]["channel_coupon_id"] == sent["channel_coupon_id"]
    empty = mirror.claim(user, stock["stock_id"], "")
    assert empty.status_code == 422  # an empty channel user is not one
    no_user = mirror.platform.marketing(
        "POST", "/v1/marketing/me/claims", user=_user(), stock_id=stock["stock_id"], request_id="r"
    )
    assert (no_user.status_code, no_user.json()["code"]) == (422, "channel_user_required")

    forged = _forged_callback(mirror, sent["channel_coupon_id"])  # not signed by WeChat: refused, nothing stored
    assert (forged.status_code, forged.json()["code"]) == (401, "FAIL")
    assert mirror.events_stored(sent["channel_coupon_id"]) == []

    payment = mirror.pay("wechatpay")
    out_trade_no = payment["attempts"][-1]["out_trade_no"]
    approved = httpx.post(
        f"{mirror.run.url('wechatpay')}/control/orders/{out_trade_no}/approve",
        params={"mchid": mirror.channels["wechatpay"]["mchid"]},
        json={"payer_openid": openid, "coupon_id": sent["channel_coupon_id"]},
        timeout=10,
    )
    assert approved.status_code == 200, approved.text
    paid = mirror.platform.reaches(payment["id"], "succeeded")
    assert paid["channel_discount"]["merchant_minor"] == COUPON  # the merchant's 免充值 coupon
    assert paid["channel_discount"]["unsettled_minor"] == COUPON

    used = eventually(
        lambda: (c := mirror.coupon(user, claimed.json()["coupon_id"]))["status"] == "used" and c,
        "COUPON.USE applied by marketing",
    )
    assert used["channel"]["transaction_id"], used
    assert mirror.posted_to_merchant(payment["id"]) == ORDER - COUPON  # the merchant collects less (§3.15)
    eventually(lambda: _acknowledged(mirror, "wechatpay", sent["channel_coupon_id"]) >= 2, "COUPON.USE taken twice")
    assert [e["kind"] for e in mirror.events_stored(sent["channel_coupon_id"])] == ["used"]  # the replay: nothing
    assert mirror.coupon(user, claimed.json()["coupon_id"])["status"] == "used"
    for action, status in (("pause", "paused"), ("resume", "running")):  # WeChat pause / restart, then here
        moved = mirror.as_merchant("POST", f"/v1/marketing/stocks/{stock['stock_id']}/{action}")
        assert (moved.status_code, moved.json()["status"]) == (200, status), moved.text


def test_an_alipay_voucher_from_a_campaign_sent_used_and_its_messages_applied_once(
    mirror: Mirror, replayed: None
) -> None:
    stock = mirror.running_stock("alipay_voucher")
    assert mirror.created_again(stock["stock_id"])
    user, buyer = _user(), f"2088{uuid.uuid4().int % 10**12:012d}"
    claimed = mirror.claim(user, stock["stock_id"], buyer)
    assert claimed.status_code == 201, claimed.text
    code = claimed.json()["channel"]["channel_coupon_id"]
    assert claimed.json()["channel"]["send_status"] == "sent" and code

    payment = mirror.pay("alipay")
    out_trade_no = payment["attempts"][-1]["out_trade_no"]
    approved = httpx.post(
        f"{mirror.run.url('alipay')}/control/trades/{out_trade_no}/approve", params={"voucher_code": code}, timeout=10
    )
    assert approved.status_code == 200, approved.text
    paid = mirror.platform.reaches(payment["id"], "succeeded")
    assert paid["channel_discount"]["merchant_minor"] == COUPON  # a 商家券: the merchant funds it

    used = eventually(
        lambda: (c := mirror.coupon(user, claimed.json()["coupon_id"]))["status"] == "used" and c,
        "alipay.marketing.activity.message.used applied",
    )
    assert used["channel"]["transaction_id"]
    assert mirror.posted_to_merchant(payment["id"]) == ORDER - COUPON
    stored = eventually(lambda: len(e := mirror.events_stored(code)) == 2 and e, "received and used stored")
    assert sorted(e["kind"] for e in stored) == ["received", "used"]  # each once, though each came twice
    assert all(e["applied_at"] is not None for e in stored)
    ended = mirror.as_merchant("POST", f"/v1/marketing/stocks/{stock['stock_id']}/end")  # ordervoucher.stop
    assert (ended.status_code, ended.json()["status"]) == (200, "ended"), ended.text


def test_the_daily_comparison_finds_nothing_then_a_use_the_channel_never_told(mirror: Mirror) -> None:
    clean = mirror.comparison()
    assert clean["complete"] and clean["mismatches"] == [], clean
    assert {s["program"] for s in clean["stocks"]} == {"wechatpay_favor", "alipay_voucher"}
    assert {s["program"]: s["channel"]["status"] for s in clean["stocks"]} == {
        "wechatpay_favor": "running",
        "alipay_voucher": "STOPPED",  # ended here, stopped there, still compared on the day it stopped
    }

    stock = mirror.running_stock("wechatpay_favor")
    user, openid = _user(), f"oLost{uuid.uuid4().hex[:16]}"
    sent = mirror.claim(user, stock["stock_id"], openid).json()["channel"]
    lost = httpx.post(
        f"{mirror.run.url('wechatpay')}/control/favor/coupons/{sent['channel_coupon_id']}/use", timeout=10
    )
    assert lost.status_code == 200, lost.text
    found = mirror.comparison()
    assert [(m["kind"], m["channel_coupon_id"]) for m in found["mismatches"]] == [
        ("used_at_channel_not_here", sent["channel_coupon_id"])
    ], found


def _acknowledged(mirror: Mirror, sandbox: str, subject: str) -> int:
    """How many deliveries of the sandbox's callbacks about `subject` the receiver acknowledged."""
    answer = httpx.get(f"{mirror.run.url(sandbox)}/control/notifications", params={"subject": subject}, timeout=10)
    return sum(1 for d in answer.json()["deliveries"] if d["acknowledged"])


def _forged_callback(mirror: Mirror, coupon_id: str) -> httpx.Response:
    """A COUPON.USE shaped like WeChat's but signed by nobody, posted where WeChat posts (through the gateway)."""
    body = json.dumps({"id": f"forged-{coupon_id}", "event_type": "COUPON.USE", "resource": {}}).encode()
    headers = {
        "Content-Type": "application/json",
        "Wechatpay-Serial": "PUB_KEY_ID_0000",
        "Wechatpay-Nonce": "n0nce",
        "Wechatpay-Timestamp": str(int(datetime.now(UTC).timestamp())),
        "Wechatpay-Signature": "Zm9yZ2Vk",
    }
    url = f"{mirror.run.url('gateway')}/v1/notify/coupons/wechatpay_favor/{mirror.platform.merchant_id}"
    return httpx.post(url, content=body, headers=headers, timeout=10)
