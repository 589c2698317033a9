"""UnionPay (全渠道 ACP 5.1.0) and e-CNY through the gateway, every part a real process (the launcher).

The shared demo platform (`make run`'s seed: both merchants registered with the UnionPay and e-CNY
bank sandboxes, routes `up_direct` and `ecny_bank` with fee rates and contracts). The demo merchant's
signed key (the Python SDK) creates payments; payers act where they would: the UnionPay card page in a
real Chromium, the e-CNY wallet app page. Then: a 退货 refund and a same-day 消费撤销 revoke, an
outcome UnionPay reports as 03 (unknown) that the cashier's queries resolve, an e-CNY QR payment and
refund, a level-4 wallet over its per-payment limit declined, fail-over from a dark UnionPay, and a
reconciliation of the day for both channels that finds exactly the discrepancies injected into the
channels' bills.
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk" / "python"))
from juhe_sdk import Client

from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.settings import DEMO_INTERNAL_TOKEN_SECRET
from sandboxes.common.testing import CallbackReceiver
from tests.e2e.test_launcher import Launched, eventually

pytestmark = pytest.mark.e2e
BEIJING = timezone(timedelta(hours=8))
SUCCESS_CARD, UNKNOWN_CARD = "6216261000000000018", "6216261000000000034"
WAIT_SECONDS = 90.0


class Demo:
    """The launched platform, the demo merchant's SDK client and its channel identities."""

    def __init__(self, platform: Launched) -> None:
        self.platform = platform
        keys = json.loads((platform.data_dir / "demo-keys.json").read_text())
        self.merchant_id = str(keys["merchant_id"])
        self.merchant = Client(platform.url("gateway"), key_id=keys["key_id"], secret=keys["secret"])
        channels = json.loads((platform.data_dir / "demo-channels.json").read_text())[self.merchant_id]
        self.mer_id = str(channels["unionpay"]["mer_id"])
        self.ecny_merchant_id = str(channels["ecny"]["merchant_id"])
        self.shop = CallbackReceiver(reply_status=200, reply_body=b"<h1>Thank you</h1>")

    def pay(self, scene: str, channels: list[str], amount_minor: int, **extra: Any) -> dict[str, Any]:
        return dict(
            self.merchant.payments.create(
                merchant_order_no=f"up-{uuid.uuid4().hex[:16]}",
                amount_minor=amount_minor,
                currency="CNY",
                description="银联与数字人民币测试",
                scene=scene,
                preferred_channels=channels,
                **extra,
            )
        )

    def reaches(self, payment_id: str, status: str) -> dict[str, Any]:
        return dict(
            eventually(
                lambda: (p := self.merchant.payments.retrieve(payment_id))["status"] == status and p,
                f"payment {payment_id} to be {status}",
                WAIT_SECONDS,
            )
        )

    def refund_reaches(self, refund_id: str, status: str) -> dict[str, Any]:
        return dict(
            eventually(
                lambda: (r := self.merchant.refunds.retrieve(refund_id))["status"] == status and r,
                f"refund {refund_id} to be {status}",
                WAIT_SECONDS,
            )
        )

    def sandbox(self, name: str, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, self.platform.url(name) + path, timeout=10, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def unionpay_order(self, number: str) -> dict[str, Any]:
        return dict(self.sandbox("unionpay", "GET", f"/control/orders/{self.mer_id}/{number.rpartition('_')[2]}"))

    def card_paid(self, payment: dict[str, Any], card_no: str = SUCCESS_CARD) -> str:
        """The payer's steps without a browser: post the consume form as the browser would (UnionPay opens
        the order and sends to its card page), then the card step by the control API."""
        form = payment["payer_action"]["form"]
        opened = httpx.post(form["action"], data=form["fields"], timeout=10)
        assert opened.status_code == 303 and "/pay/consume/" in opened.headers["location"], opened.text
        out_trade_no = payment["attempts"][-1]["out_trade_no"]
        self.sandbox("unionpay", "POST", f"/control/orders/{self.mer_id}/{out_trade_no}/pay", json={"card_no": card_no})
        return str(out_trade_no)


@pytest.fixture(scope="module")
def demo(demo_platform: Launched) -> Demo:
    """The shared demo platform (its cashier polls every 1-2 s, its sandboxes notify at once)."""
    return Demo(demo_platform)


def _web_form(payer_action: dict[str, Any]) -> None:
    assert payer_action["type"] == "form" and payer_action["form"]["method"] == "POST"
    assert payer_action["form"]["action"].endswith("/gateway/api/frontTransReq.do")


def test_unionpay_web_payment_in_chromium_then_refund(demo: Demo, tmp_path: Path) -> None:
    """The payer's browser loads the auto-submit form, enters the test card on UnionPay's page and is sent
    back to the shop's frontUrl; the back notification makes the payment succeed; a partial 退货 follows."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import expect, sync_playwright

    payment = demo.pay("page", ["unionpay"], 12_345, return_url=demo.shop.url("return"))
    assert (payment["status"], payment["channel"], payment["route_id"]) == ("processing", "unionpay", "up_direct")
    _web_form(payment["payer_action"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_content(
                payment["payer_action"]["channel_data"]["html"]
            )  # the shop's page submits itself to UnionPay
            page.wait_for_url("**/pay/consume/**")
            expect(page.locator(".amount")).to_have_text("¥123.45")
            page.fill("#card_no", SUCCESS_CARD)
            page.fill("#expiry", "1229")
            page.fill("#cvn2", "123")
            page.fill("#sms_code", "111111")
            page.click("#pay")
            page.wait_for_url(demo.shop.url("return"))  # UnionPay's result page POSTs itself to frontUrl
            expect(page.locator("h1")).to_have_text("Thank you")
            page.screenshot(path=str(tmp_path / "unionpay-back-at-shop.png"))
        finally:
            browser.close()
    _headers, body = demo.shop.next("return")
    front = dict(parse_qsl(body.decode()))
    assert (front["respCode"], front["txnAmt"], front["merId"]) == ("00", "12345", demo.mer_id)

    paid = demo.reaches(payment["id"], "succeeded")
    assert paid["refundable_minor"] == 12_345
    refund = dict(demo.merchant.payments.refund(payment["id"], amount_minor=2_345, reason="one item back"))
    done = demo.refund_reaches(refund["id"], "succeeded")
    assert done["amount_minor"] == 2_345
    order = demo.unionpay_order(refund["id"])
    assert (order["txn_type"], order["amount"]) == ("04", 2_345)  # 退货: partial, after the consume
    assert demo.merchant.payments.retrieve(payment["id"])["refundable_minor"] == 10_000


def test_unionpay_same_day_full_refund_is_a_revoke(demo: Demo) -> None:
    payment = demo.pay("h5", ["unionpay"], 5_000, return_url=demo.shop.url("return-h5"))
    assert payment["payer_action"]["form"]["fields"]["channelType"] == "08"  # mobile web
    demo.card_paid(payment)
    demo.reaches(payment["id"], "succeeded")
    refund = dict(demo.merchant.payments.refund(payment["id"], amount_minor=5_000, reason="order cancelled"))
    demo.refund_reaches(refund["id"], "succeeded")
    assert demo.unionpay_order(refund["id"])["txn_type"] == "31"  # 消费撤销: same day, full, no fee
    assert demo.merchant.payments.retrieve(payment["id"])["status"] in ("refunded", "succeeded")


def test_unionpay_unknown_outcome_resolved_by_query(demo: Demo) -> None:
    """The card answers 03 (处理中): no notification; the cashier's queries see 03 until UnionPay knows."""
    payment = demo.pay("page", ["unionpay"], 777, return_url=demo.shop.url("return-unknown"))
    out_trade_no = demo.card_paid(payment, UNKNOWN_CARD)
    assert demo.unionpay_order(out_trade_no)["status"] == "unknown"
    paid = demo.reaches(payment["id"], "succeeded")
    assert paid["channel"] == "unionpay"
    assert demo.unionpay_order(out_trade_no)["status"] == "success"  # resolved by the queries, not forced


def test_ecny_qr_payment_and_refund(demo: Demo) -> None:
    payment = demo.pay("native_qr", ["ecny"], 1_888)
    assert (payment["channel"], payment["route_id"], payment["payer_action"]["type"]) == (
        "ecny",
        "ecny_bank",
        "qr_code",
    )
    out_trade_no = payment["attempts"][-1]["out_trade_no"]
    wallet = httpx.get(payment["payer_action"]["qr_code"], timeout=10)  # what the wallet app opens on a scan
    assert wallet.status_code == 200 and "18.88" in wallet.text
    paid_page = httpx.post(payment["payer_action"]["qr_code"], data={"action": "pay", "wallet_level": "2"}, timeout=10)
    assert paid_page.status_code == 200 and '<span id="status">SUCCEEDED</span>' in paid_page.text
    paid = demo.reaches(payment["id"], "succeeded")
    assert paid["attempts"][-1]["out_trade_no"] == out_trade_no
    refund = dict(demo.merchant.payments.refund(payment["id"], amount_minor=888, reason="partial"))
    assert demo.refund_reaches(refund["id"], "succeeded")["amount_minor"] == 888
    assert demo.merchant.payments.retrieve(payment["id"])["refundable_minor"] == 1_000


def test_ecny_level_4_wallet_over_its_limit_is_declined(demo: Demo) -> None:
    payment = demo.pay("h5", ["ecny"], 2_000_01)  # one fen over a level-4 wallet's 2,000 yuan per payment
    assert payment["payer_action"]["type"] == "redirect"
    out_trade_no = payment["attempts"][-1]["out_trade_no"]
    page = httpx.post(
        payment["payer_action"]["url"].split("?")[0], data={"action": "pay", "wallet_level": "4"}, timeout=10
    )
    assert page.status_code == 200, page.text
    assert '<span id="status">FAILED</span> WALLET_LIMIT_EXCEEDED' in page.text  # what the payer's app shows
    failed = demo.reaches(payment["id"], "failed")
    assert failed["refundable_minor"] == 0 and failed["attempts"][-1]["out_trade_no"] == out_trade_no


def test_dark_unionpay_fails_over_to_another_channel(demo: Demo) -> None:
    """UnionPay's app consume is a server call (appTransReq → tn): when it hangs, the attempt fails
    `channel_unavailable` and the same payment moves on to the next channel that takes the scene."""
    demo.sandbox("unionpay", "PUT", "/control/faults", json={"dark": True})
    try:
        payment = demo.pay("app", ["unionpay", "alipay"], 3_300)
    finally:
        demo.sandbox("unionpay", "PUT", "/control/faults", json={"dark": False})
    assert [(a["channel"], a["status"]) for a in payment["attempts"]] == [
        ("unionpay", "failed"),
        ("alipay", "processing"),
    ], payment["attempts"]
    assert payment["attempts"][0]["failure_code"] == "channel_unavailable"
    assert (payment["channel"], payment["route_id"]) == ("alipay", "ali_direct")
    tn = demo.pay("app", ["unionpay"], 3_300)  # UnionPay answers again: the app gets its tn
    assert (tn["channel"], tn["payer_action"]["type"]) == ("unionpay", "app") and tn["payer_action"]["app_params"]["tn"]


def test_a_day_of_both_channels_reconciles_to_exactly_the_injected_discrepancies(demo: Demo) -> None:
    today = datetime.now(UTC).astimezone(BEIJING).date()
    paid: dict[str, list[dict[str, Any]]] = {"unionpay": [], "ecny": []}
    for amount in (1_001, 1_002):
        payment = demo.pay("page", ["unionpay"], amount)
        demo.card_paid(payment)
        paid["unionpay"].append(demo.reaches(payment["id"], "succeeded"))
        payment = demo.pay("native_qr", ["ecny"], amount)
        demo.sandbox(
            "ecny",
            "POST",
            f"/control/orders/{demo.ecny_merchant_id}/{payment['attempts'][-1]['out_trade_no']}/pay",
            json={"wallet_level": 1},
        )
        paid["ecny"].append(demo.reaches(payment["id"], "succeeded"))
    injected: dict[str, set[tuple[str, str]]] = {}
    for channel, payments in paid.items():
        dropped, changed = (p["attempts"][-1]["out_trade_no"] for p in payments)
        for body in (
            {"kind": "drop_line", "out_trade_no": dropped},
            {"kind": "change_amount", "out_trade_no": changed, "amount_minor": 999},
        ):
            demo.sandbox(channel, "POST", f"/control/bills/{today.isoformat()}/discrepancies", json=body)
        injected[channel] = {("missing_at_channel", dropped), ("amount_mismatch", changed)}

    token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="e2e-operator", platform="plt_demo")
    with httpx.Client(
        base_url=demo.platform.url("settlement"), headers={IDENTITY_HEADER: token}, timeout=60
    ) as settlement:

        def found(channel: str) -> set[tuple[str, str]] | None:
            """One run of the day; its non-matched items, once they are exactly the injected ones."""
            run = settlement.post(
                "/v1/settlement/reconciliations",
                json={"channel": channel, "merchant_id": demo.merchant_id, "bill_date": today.isoformat()},
            )
            assert run.status_code == 201, run.text
            assert run.json()["status"] == "finished", run.json()
            items = settlement.get(
                "/v1/settlement/reconciliation-items", params={"run_id": run.json()["run_id"], "limit": 100}
            ).json()["data"]
            seen = {(i["outcome"], i["key"]) for i in items if i["outcome"] != "matched"}
            return seen if seen == injected[channel] else None

        assert eventually(lambda: found("unionpay"), "unionpay reconciliation", WAIT_SECONDS)
        assert eventually(lambda: found("ecny"), "e-CNY reconciliation", WAIT_SECONDS)


def test_the_wallet_merchants_alipay_app_is_in_certificate_mode(demo: Demo) -> None:
    """The seed switches `mch_wallet`'s Alipay app to certificate mode (fund APIs need it): the cashier's
    requests then carry app_cert_sn + alipay_root_cert_sn, which the Alipay sandbox checks."""
    config = json.loads((demo.platform.data_dir / "demo-channels.json").read_text())["mch_wallet"]["alipay"]
    assert config["app_cert_pem"] and config["alipay_cert_pem"] and config["alipay_root_cert_pem"]
    app = demo.sandbox("alipay", "GET", f"/control/apps/{config['app_id']}")
    assert app["app_cert_sn"], app
    token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="e2e-wallet", merchant_id="mch_wallet")
    created = httpx.post(
        f"{demo.platform.url('cashier')}/v1/payments",
        headers={IDENTITY_HEADER: token},
        timeout=30,
        json={
            "merchant_order_no": f"cert-{uuid.uuid4().hex[:12]}",
            "amount_minor": 100,
            "currency": "CNY",
            "description": "certificate mode",
            "scene": "native_qr",
            "preferred_channels": ["alipay"],
        },
    )
    assert created.status_code == 201, created.text
    payment = created.json()
    assert (payment["status"], payment["channel"], payment["payer_action"]["type"]) == (
        "processing",
        "alipay",
        "qr_code",
    ), payment
