"""The Alipay connector against the real Alipay sandbox server, over real HTTP with real RSA2 keys.

The sandbox runs as `python -m sandboxes.alipay` on a free port; an app is registered through its
control API (the sandbox generates the app key pair); notifications go to a small real HTTP
receiver that, like a merchant, verifies each one with the connector before answering `success`.
"""

from __future__ import annotations

import base64
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from libs.common.testing.waiting import eventually
from sandboxes.common.testing import SandboxProcess
from services.cashier.connectors.alipay import AlipayConfig, AlipayConnector, transfers
from services.cashier.connectors.base import (
    BillLineKind,
    ChannelError,
    ChannelUnavailable,
    InvalidSignature,
    Notification,
    NotificationKind,
    PaymentCodeRequest,
    PrepayRequest,
    RefundRequest,
    RefundStatus,
    TradeStatus,
    TransferRequest,
    TransferStatus,
    payment_code_channel,
)
from services.cashier.domain.payments import PaymentScene

BEIJING = timezone(timedelta(hours=8))
WAIT_SECONDS_MAX = 15.0


class AlipayReceiver:
    """A merchant's notify endpoint: verifies with the connector, answers `success` only if valid.

    `refusals[path] = n` makes the first n deliveries to that path answer `fail` (to see retries).
    """

    def __init__(self) -> None:
        self.verify: Callable[[bytes], Notification] | None = None
        self.received: list[tuple[str, bytes, str]] = []  # (path, body, answer)
        self.refusals: dict[str, int] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = receiver._answer(self.path, body, self.headers.get("Content-Type", ""))
                data = answer.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _answer(self, path: str, body: bytes, content_type: str) -> str:
        with self._lock:
            answer = "success"
            if not content_type.startswith("application/x-www-form-urlencoded"):
                answer = "fail"
            elif self.refusals.get(path, 0) > 0:
                self.refusals[path] -= 1
                answer = "fail"
            else:
                try:
                    assert self.verify is not None
                    self.verify(body)
                except InvalidSignature:
                    answer = "fail"
            self.received.append((path, body, answer))
            return answer

    def url(self, name: str) -> str:
        return f"{self.base_url}/notify/{name}"

    def bodies(self, name: str) -> list[bytes]:
        with self._lock:
            return [body for path, body, _ in self.received if path == f"/notify/{name}"]

    def answers(self, name: str) -> list[str]:
        with self._lock:
            return [answer for path, _, answer in self.received if path == f"/notify/{name}"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """`eventually()` with this module's bound (behaviour, not timing, is what is asserted)."""
    await eventually(condition, what, timeout_seconds=WAIT_SECONDS_MAX, poll_seconds=0.02)


@pytest.fixture(scope="module")
def alipay_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    data_dir = tmp_path_factory.mktemp("alipay-sandbox")
    env = {"JUHE_DATA_DIR": str(data_dir), "JUHE_SANDBOX_NOTIFY_SCALE": "0.001"}
    with SandboxProcess("sandboxes.alipay", port_env="JUHE_SANDBOX_ALIPAY_PORT", env=env) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def alipay_receiver() -> Iterator[AlipayReceiver]:
    receiver = AlipayReceiver()
    yield receiver
    receiver.close()


def _register(sandbox: SandboxProcess) -> dict[str, Any]:
    response = httpx.post(sandbox.base_url + "/control/apps", json={})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _config(sandbox: SandboxProcess, app: dict[str, Any], **overrides: Any) -> AlipayConfig:
    values: dict[str, Any] = {
        "gateway_url": sandbox.base_url + "/gateway.do",
        "app_id": app["app_id"],
        "app_private_key_pem": app["app_private_key_pem"],
        "alipay_public_key_pem": app["alipay_public_key_pem"],
        "seller_id": app["seller_id"],
        "read_timeout_seconds": 5.0,
    }
    values.update(overrides)
    return AlipayConfig.model_validate(values)


@pytest.fixture(scope="module")
def alipay_app(alipay_sandbox: SandboxProcess) -> dict[str, Any]:
    return _register(alipay_sandbox)


@pytest.fixture
async def alipay_connector(
    alipay_sandbox: SandboxProcess, alipay_app: dict[str, Any], alipay_receiver: AlipayReceiver
) -> AsyncIterator[AlipayConnector]:
    connector = AlipayConnector(_config(alipay_sandbox, alipay_app))
    alipay_receiver.verify = lambda body: connector.parse_notification({}, body)
    yield connector
    await connector.aclose()


@pytest.fixture
async def alipay_control(alipay_sandbox: SandboxProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=alipay_sandbox.base_url, timeout=10.0) as client:
        yield client
        await client.put("/control/faults", json={"error_rate": 0.0, "dark": False, "latency_ms": 0})


def _order_no(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _prepay(
    out_trade_no: str, scene: PaymentScene, notify_url: str, amount_minor: int = 10000, **extra: Any
) -> PrepayRequest:
    return PrepayRequest(
        out_trade_no=out_trade_no,
        amount_minor=amount_minor,
        currency="CNY",
        description="聚合收银 测试订单",
        scene=scene,
        notify_url=notify_url,
        **extra,
    )


async def _paid_qr_trade(
    connector: AlipayConnector, control: httpx.AsyncClient, receiver: AlipayReceiver, amount_minor: int = 10000
) -> str:
    out_trade_no = _order_no("paid")
    await connector.prepay(_prepay(out_trade_no, PaymentScene.NATIVE_QR, receiver.url(out_trade_no), amount_minor))
    assert (await control.post(f"/control/trades/{out_trade_no}/approve")).status_code == 200
    return out_trade_no


# ---------------------------------------------------------------- payments


async def test_precreate_scan_approve_query_and_notification(
    alipay_connector: AlipayConnector, alipay_control: httpx.AsyncClient, alipay_receiver: AlipayReceiver
) -> None:
    out_trade_no = _order_no("qr")
    result = await alipay_connector.prepay(
        _prepay(out_trade_no, PaymentScene.NATIVE_QR, alipay_receiver.url(out_trade_no))
    )
    assert result.payer_action["type"] == "qr_code"
    qr_code = result.payer_action["qr_code"]

    # Precreated but not scanned: Alipay has no such trade yet, and there is nothing to close.
    assert (await alipay_connector.query(out_trade_no)).status is TradeStatus.NOT_FOUND
    with pytest.raises(ChannelError) as not_exist:
        await alipay_connector.close(out_trade_no)
    assert not_exist.value.code == "ACQ.TRADE_NOT_EXIST"
    assert not not_exist.value.retryable

    # The buyer scans: the QR code URL opens the sandbox cashier.
    page = await alipay_control.get(qr_code)
    assert page.status_code == 200
    assert "Approve" in page.text
    waiting = await alipay_connector.query(out_trade_no)
    assert waiting.status is TradeStatus.PENDING
    assert waiting.detail == "WAIT_BUYER_PAY"
    assert waiting.amount_minor == 10000

    approved = await alipay_control.post(f"/control/trades/{out_trade_no}/approve")
    assert approved.status_code == 200
    paid = await alipay_connector.query(out_trade_no)
    assert paid.status is TradeStatus.SUCCEEDED
    assert paid.amount_minor == 10000
    assert paid.paid_at is not None
    assert paid.channel_trade_no == approved.json()["trade_no"]

    await wait_until(lambda: "success" in alipay_receiver.answers(out_trade_no), "the payment notification")
    notification = alipay_connector.parse_notification({}, alipay_receiver.bodies(out_trade_no)[0])
    assert notification.kind is NotificationKind.PAYMENT
    assert notification.ack_body == b"success"
    assert notification.payment is not None
    assert notification.payment.status is TradeStatus.SUCCEEDED
    assert notification.payment.out_trade_no == out_trade_no
    assert notification.payment.amount_minor == 10000
    assert notification.payment.channel_trade_no == paid.channel_trade_no


async def test_an_alipay_funded_voucher_is_read_from_voucher_detail_list(
    alipay_connector: AlipayConnector,
    alipay_control: httpx.AsyncClient,
    alipay_receiver: AlipayReceiver,
    alipay_app: dict[str, Any],
) -> None:
    """The buyer pays with a voucher Alipay funds: query (with query_options) and notification report it as
    the channel's discount; the amount asked for is unchanged."""
    voucher = await alipay_control.post(
        "/control/vouchers/alipay",
        json={"app_id": alipay_app["app_id"], "buyer_id": "2088102146225135", "amount_minor": 500},
    )
    assert voucher.status_code == 200, voucher.text
    out_trade_no = _order_no("vch")
    await alipay_connector.prepay(
        _prepay(out_trade_no, PaymentScene.NATIVE_QR, alipay_receiver.url(out_trade_no), 3000)
    )
    approved = await alipay_control.post(
        f"/control/trades/{out_trade_no}/approve", params={"voucher_code": voucher.json()["voucher_code"]}
    )
    assert approved.status_code == 200, approved.text
    paid = await alipay_connector.query(out_trade_no)
    assert paid.status is TradeStatus.SUCCEEDED and paid.amount_minor == 3000
    [discount] = paid.channel_discounts
    assert (discount.amount_minor, discount.channel_minor, discount.merchant_minor, discount.unsettled_minor) == (
        500,
        500,
        0,
        0,
    )
    assert discount.kind == "ALIPAY_FIX_VOUCHER" and discount.stock_id == voucher.json()["activity_id"]
    await wait_until(lambda: "success" in alipay_receiver.answers(out_trade_no), "the payment notification")
    notification = alipay_connector.parse_notification({}, alipay_receiver.bodies(out_trade_no)[0])
    assert notification.payment is not None and notification.payment.channel_discounts == paid.channel_discounts


async def test_page_pay_browser_flow_with_signed_return(
    alipay_connector: AlipayConnector, alipay_control: httpx.AsyncClient, alipay_receiver: AlipayReceiver
) -> None:
    out_trade_no = _order_no("page")
    result = await alipay_connector.prepay(
        _prepay(
            out_trade_no,
            PaymentScene.PAGE,
            alipay_receiver.url(out_trade_no),
            amount_minor=8888,
            return_url="https://merchant.example/return?order=1",
        )
    )
    assert result.payer_action["type"] == "redirect"
    # Before the buyer opens the cashier the trade does not exist.
    assert (await alipay_connector.query(out_trade_no)).status is TradeStatus.NOT_FOUND

    page = await alipay_control.get(result.payer_action["url"], follow_redirects=True)
    assert page.status_code == 200
    assert "88.88" in page.text
    approve_path = re.search(r'action="(/pay/cashier/[0-9]+/approve)"', page.text)
    assert approve_path is not None
    assert (await alipay_connector.query(out_trade_no)).status is TradeStatus.PENDING

    redirect = await alipay_control.post(approve_path.group(1))
    assert redirect.status_code == 303
    location = urlsplit(redirect.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "merchant.example", "/return")
    params = dict(parse_qsl(location.query))
    assert params.pop("order") == "1"
    assert params["method"] == "alipay.trade.page.pay.return"
    returned = alipay_connector.parse_return(params)
    assert returned.status is TradeStatus.SUCCEEDED
    assert returned.amount_minor == 8888
    with pytest.raises(InvalidSignature):
        alipay_connector.parse_return({**params, "total_amount": "0.01"})

    assert (await alipay_connector.query(out_trade_no)).status is TradeStatus.SUCCEEDED
    await wait_until(lambda: "success" in alipay_receiver.answers(out_trade_no), "the page-pay notification")


async def test_wap_pay_form_post_then_decline_closes(
    alipay_connector: AlipayConnector, alipay_control: httpx.AsyncClient, alipay_receiver: AlipayReceiver
) -> None:
    out_trade_no = _order_no("wap")
    result = await alipay_connector.prepay(_prepay(out_trade_no, PaymentScene.H5, alipay_receiver.url(out_trade_no)))
    form = result.payer_action["form"]
    assert form["fields"]["method"] == "alipay.trade.wap.pay"
    # The auto-submit form: charset in the action's query string, everything else in the body.
    page = await alipay_control.post(form["action"], data=form["fields"], follow_redirects=True)
    assert page.status_code == 200
    decline_path = re.search(r'action="(/pay/cashier/[0-9]+/decline)"', page.text)
    assert decline_path is not None
    assert (await alipay_control.post(decline_path.group(1))).status_code == 200
    closed = await alipay_connector.query(out_trade_no)
    assert closed.status is TradeStatus.CLOSED
    assert closed.paid_at is None


async def test_app_pay_order_string_is_accepted_by_the_sandbox_app(
    alipay_connector: AlipayConnector, alipay_control: httpx.AsyncClient, alipay_receiver: AlipayReceiver
) -> None:
    out_trade_no = _order_no("app")
    result = await alipay_connector.prepay(_prepay(out_trade_no, PaymentScene.APP, alipay_receiver.url(out_trade_no)))
    opened = await alipay_control.post("/control/app_pay", json={"order_string": result.payer_action["order_string"]})
    assert opened.status_code == 200, opened.text
    assert opened.json()["status"] == "WAIT_BUYER_PAY"
    tampered = result.payer_action["order_string"].replace("100.00", "1.00")
    refused = await alipay_control.post("/control/app_pay", json={"order_string": tampered})
    assert refused.status_code == 400
    assert refused.json()["detail"]["sub_code"] == "isv.invalid-signature"


async def test_close_waiting_trade_then_close_again_is_refused(
    alipay_connector: AlipayConnector, alipay_control: httpx.AsyncClient, alipay_receiver: AlipayReceiver
) -> None:
    out_trade_no = _order_no("close")
    await alipay_connector.prepay(_prepay(out_trade_no, PaymentScene.NATIVE_QR, alipay_receiver.url(out_trade_no)))
    assert (await alipay_control.post(f"/control/trades/{out_trade_no}/scan")).json()["status"] == "WAIT_BUYER_PAY"
    await alipay_connector.close(out_trade_no)
    assert (await alipay_connector.query(out_trade_no)).status is TradeStatus.CLOSED
    with pytest.raises(ChannelError) as again:
        await alipay_connector.close(out_trade_no)
    assert again.value.code == "ACQ.TRADE_STATUS_ERROR"
    assert (await alipay_control.post(f"/control/trades/{out_trade_no}/approve")).status_code == 409

    await wait_until(lambda: "success" in alipay_receiver.answers(out_trade_no), "the close notification")
    notification = alipay_connector.parse_notification({}, alipay_receiver.bodies(out_trade_no)[0])
    assert notification.payment is not None
    assert notification.payment.status is TradeStatus.CLOSED


# ---------------------------------------------------------------- refunds


async def test_partial_refunds_over_refund_refused_idempotent_retry_and_refund_query(
    alipay_connector: AlipayConnector, alipay_control: httpx.AsyncClient, alipay_receiver: AlipayReceiver
) -> None:
    out_trade_no = await _paid_qr_trade(alipay_connector, alipay_control, alipay_receiver)

    def refund(out_refund_no: str, refund_minor: int) -> RefundRequest:
        return RefundRequest(
            out_trade_no=out_trade_no,
            out_refund_no=out_refund_no,
            refund_minor=refund_minor,
            total_minor=10000,
            currency="CNY",
            reason="顾客退货",
        )

    first = await alipay_connector.refund(refund("re_1", 3000))
    assert first.status is RefundStatus.SUCCEEDED
    assert first.refund_minor == 3000
    second = await alipay_connector.refund(refund("re_2", 5000))
    assert second.status is RefundStatus.SUCCEEDED
    with pytest.raises(ChannelError) as too_much:
        await alipay_connector.refund(refund("re_3", 3000))
    assert too_much.value.code == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    assert not too_much.value.retryable

    retry = await alipay_connector.refund(refund("re_1", 3000))
    assert retry.status is RefundStatus.PENDING  # fund_change=N: confirm by query
    confirmed = await alipay_connector.query_refund("re_1", out_trade_no)
    assert confirmed.status is RefundStatus.SUCCEEDED
    assert confirmed.refund_minor == 3000
    unknown = await alipay_connector.query_refund("re_never", out_trade_no)
    assert unknown.status is RefundStatus.NOT_FOUND
    refused = await alipay_connector.query_refund("re_3", out_trade_no)
    assert refused.status is RefundStatus.NOT_FOUND
    assert (await alipay_connector.query_refund("re_1", _order_no("nope"))).status is RefundStatus.NOT_FOUND

    # The last 20.00 refunds the trade fully: TRADE_CLOSED, but still a paid trade for the cashier.
    assert (await alipay_connector.refund(refund("re_4", 2000))).status is RefundStatus.SUCCEEDED
    after = await alipay_connector.query(out_trade_no)
    assert after.detail == "TRADE_CLOSED"
    assert after.status is TradeStatus.SUCCEEDED

    await wait_until(lambda: alipay_receiver.answers(out_trade_no).count("success") >= 4, "refund notifications")
    kinds = [alipay_connector.parse_notification({}, body) for body in alipay_receiver.bodies(out_trade_no)]
    refunds = [n.refund.out_refund_no for n in kinds if n.kind is NotificationKind.REFUND and n.refund]
    assert sorted(refunds) == ["re_1", "re_2", "re_4"]


# ---------------------------------------------------------------- signatures


def _sign_request(params: dict[str, str], private_pem: str) -> str:
    """An independent RSA2 request signer (all params but sign, sorted, raw), for raw gateway calls."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    content = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k])
    return base64.b64encode(key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def _resign(params: dict[str, str], private_pem: str) -> bytes:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    content = "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("sign", "sign_type") and params[k])
    sign = base64.b64encode(key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    return urlencode({**params, "sign": sign}).encode()


async def test_forged_notifications_are_refused(
    alipay_connector: AlipayConnector,
    alipay_control: httpx.AsyncClient,
    alipay_receiver: AlipayReceiver,
    alipay_app: dict[str, Any],
) -> None:
    out_trade_no = await _paid_qr_trade(alipay_connector, alipay_control, alipay_receiver)
    await wait_until(lambda: bool(alipay_receiver.bodies(out_trade_no)), "a real notification")
    genuine = alipay_receiver.bodies(out_trade_no)[0]
    assert alipay_connector.parse_notification({}, genuine).payment is not None
    params = dict(parse_qsl(genuine.decode()))

    tampered = urlencode({**params, "total_amount": "0.01"}).encode()
    with pytest.raises(InvalidSignature):
        alipay_connector.parse_notification({}, tampered)
    wrong_key = _resign({**params, "total_amount": "0.01"}, alipay_app["app_private_key_pem"])
    with pytest.raises(InvalidSignature):
        alipay_connector.parse_notification({}, wrong_key)

    # A forged notification POSTed to the merchant is answered `fail`, never `success`.
    response = await alipay_control.post(
        alipay_receiver.url("forged"),
        content=wrong_key,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.text == "fail"


async def test_request_with_bad_sign_gets_unsigned_40002(
    alipay_sandbox: SandboxProcess, alipay_app: dict[str, Any]
) -> None:
    impostor = _register(alipay_sandbox)  # a valid key, but not this app's
    connector = AlipayConnector(
        _config(alipay_sandbox, alipay_app, app_private_key_pem=impostor["app_private_key_pem"])
    )
    try:
        with pytest.raises(ChannelError) as refused:
            await connector.query(_order_no("sig"))
    finally:
        await connector.aclose()
    assert refused.value.code == "isv.invalid-signature"
    assert not refused.value.retryable

    params = {
        "app_id": alipay_app["app_id"],
        "method": "alipay.trade.query",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
        "version": "1.0",
        "biz_content": '{"out_trade_no":"x"}',
    }
    async with httpx.AsyncClient() as client:
        forged = await client.post(
            alipay_sandbox.base_url + "/gateway.do",
            data={**params, "sign": _sign_request(params, impostor["app_private_key_pem"])},
        )
        genuine = await client.post(
            alipay_sandbox.base_url + "/gateway.do",
            data={**params, "sign": _sign_request(params, alipay_app["app_private_key_pem"])},
        )
        stale = {**params, "timestamp": "2024-01-01 00:00:00"}
        stale_answer = await client.post(
            alipay_sandbox.base_url + "/gateway.do",
            data={**stale, "sign": _sign_request(stale, alipay_app["app_private_key_pem"])},
        )
    assert forged.json() == {
        "alipay_trade_query_response": {
            "code": "40002",
            "msg": "Invalid Arguments",
            "sub_code": "isv.invalid-signature",
            "sub_msg": forged.json()["alipay_trade_query_response"]["sub_msg"],
        }
    }  # and no "sign": Alipay does not sign this refusal
    assert genuine.json()["alipay_trade_query_response"]["sub_code"] == "ACQ.TRADE_NOT_EXIST"
    assert "sign" in genuine.json()
    assert stale_answer.json()["alipay_trade_query_response"]["sub_code"] == "isv.invalid-timestamp"


async def test_connector_refuses_responses_signed_by_another_key(
    alipay_sandbox: SandboxProcess, alipay_app: dict[str, Any]
) -> None:
    other = _register(alipay_sandbox)
    connector = AlipayConnector(_config(alipay_sandbox, alipay_app, alipay_public_key_pem=other["app_public_key_pem"]))
    try:
        with pytest.raises(InvalidSignature):
            await connector.query(_order_no("pk"))
    finally:
        await connector.aclose()


# ---------------------------------------------------------------- notifications delivery


async def test_notification_is_retried_until_the_literal_success(
    alipay_connector: AlipayConnector, alipay_control: httpx.AsyncClient, alipay_receiver: AlipayReceiver
) -> None:
    out_trade_no = _order_no("retry")
    alipay_receiver.refusals[f"/notify/{out_trade_no}"] = 2
    await alipay_connector.prepay(_prepay(out_trade_no, PaymentScene.NATIVE_QR, alipay_receiver.url(out_trade_no)))
    await alipay_control.post(f"/control/trades/{out_trade_no}/approve")
    await wait_until(lambda: "success" in alipay_receiver.answers(out_trade_no), "the third delivery")
    assert alipay_receiver.answers(out_trade_no) == ["fail", "fail", "success"]

    # The receiver answers before the sandbox records the answer: poll the log (bounded).
    async def acknowledged_log() -> list[dict[str, Any]] | None:
        response = await alipay_control.get("/control/notifications", params={"subject": out_trade_no})
        deliveries: list[dict[str, Any]] = response.json()["deliveries"]
        return deliveries if any(entry["acknowledged"] for entry in deliveries) else None

    log = await eventually(
        acknowledged_log, "the acknowledged delivery logged", timeout_seconds=WAIT_SECONDS_MAX, poll_seconds=0.02
    )
    assert [(entry["attempt"], entry["acknowledged"]) for entry in log] == [(1, False), (2, False), (3, True)]
    bodies = alipay_receiver.bodies(out_trade_no)
    assert len({dict(parse_qsl(b.decode()))["notify_id"] for b in bodies}) == 1  # one notification, retried


# ---------------------------------------------------------------- bills


async def test_bill_download_matches_the_orders_and_shows_discrepancies(
    alipay_sandbox: SandboxProcess, alipay_control: httpx.AsyncClient, alipay_receiver: AlipayReceiver
) -> None:
    app = _register(alipay_sandbox)  # its own app, so the bill holds only this test's trades
    connector = AlipayConnector(_config(alipay_sandbox, app))
    try:
        first = await _paid_qr_trade(connector, alipay_control, alipay_receiver, amount_minor=10000)
        second = await _paid_qr_trade(connector, alipay_control, alipay_receiver, amount_minor=1)
        refund = RefundRequest(
            out_trade_no=first, out_refund_no="re_bill_1", refund_minor=2550, total_minor=10000, currency="CNY"
        )
        await connector.refund(refund)
        paid = await connector.query(first)
        assert paid.paid_at is not None
        bill_date: date = paid.paid_at.astimezone(BEIJING).date()

        bill = await connector.download_bill(bill_date)
        assert bill.bill_date == bill_date
        assert bill.raw_sha1 is not None
        lines = {(line.kind, line.out_trade_no, line.out_refund_no): line for line in bill.lines}
        assert set(lines) == {
            (BillLineKind.PAYMENT, first, None),
            (BillLineKind.PAYMENT, second, None),
            (BillLineKind.REFUND, first, "re_bill_1"),
        }
        assert lines[(BillLineKind.PAYMENT, first, None)].amount_minor == 10000
        assert lines[(BillLineKind.PAYMENT, first, None)].fee_minor == 60  # 0.60% of 100.00
        assert lines[(BillLineKind.PAYMENT, first, None)].channel_trade_no == paid.channel_trade_no
        assert lines[(BillLineKind.PAYMENT, second, None)].amount_minor == 1
        assert lines[(BillLineKind.REFUND, first, "re_bill_1")].amount_minor == 2550
        assert lines[(BillLineKind.REFUND, first, "re_bill_1")].fee_minor == -15

        ghost = _order_no("ghost")
        for item in (
            {"kind": "drop_line", "out_trade_no": second},
            {"kind": "change_amount", "out_trade_no": first, "amount_minor": 9999},
            {"kind": "report_success", "out_trade_no": ghost, "amount_minor": 500},
        ):
            response = await alipay_control.post(
                f"/control/bills/{bill_date.isoformat()}/discrepancies", json={**item, "app_id": app["app_id"]}
            )
            assert response.status_code == 200, response.text
        skewed = await connector.download_bill(bill_date)
        skewed_lines = {(line.kind, line.out_trade_no, line.out_refund_no): line for line in skewed.lines}
        assert set(skewed_lines) == {
            (BillLineKind.PAYMENT, first, None),
            (BillLineKind.REFUND, first, "re_bill_1"),
            (BillLineKind.PAYMENT, ghost, None),
        }
        assert skewed_lines[(BillLineKind.PAYMENT, first, None)].amount_minor == 9999
        assert skewed_lines[(BillLineKind.PAYMENT, ghost, None)].amount_minor == 500

        with pytest.raises(ChannelError) as future:
            await connector.download_bill(bill_date + timedelta(days=2))
        assert future.value.code == "isp.bill_not_exist"
    finally:
        await connector.aclose()


# ---------------------------------------------------------------- faults


async def test_fault_modes_map_to_retryable_errors_and_unavailability(
    alipay_sandbox: SandboxProcess,
    alipay_app: dict[str, Any],
    alipay_connector: AlipayConnector,
    alipay_control: httpx.AsyncClient,
) -> None:
    assert (await alipay_control.put("/control/faults", json={"error_rate": 1.0})).status_code == 200
    with pytest.raises(ChannelError) as system_error:
        await alipay_connector.query(_order_no("fault"))
    assert system_error.value.code == "ACQ.SYSTEM_ERROR"
    assert system_error.value.retryable
    with pytest.raises(ChannelError) as unavailable:
        await alipay_connector.download_bill(date.today())
    assert unavailable.value.code == "isp.unknow-error"
    assert unavailable.value.retryable

    await alipay_control.put("/control/faults", json={"error_rate": 0.0, "dark": True})
    impatient = AlipayConnector(_config(alipay_sandbox, alipay_app, read_timeout_seconds=0.3))
    try:
        with pytest.raises(ChannelUnavailable):
            await impatient.query(_order_no("dark"))
    finally:
        await impatient.aclose()
    await alipay_control.put("/control/faults", json={"dark": False})
    assert (await alipay_connector.query(_order_no("back"))).status is TradeStatus.NOT_FOUND


async def test_connection_refused_is_unavailable(alipay_app: dict[str, Any]) -> None:
    from sandboxes.common.testing import free_port

    config = AlipayConfig.model_validate(
        {
            "gateway_url": f"http://127.0.0.1:{free_port()}/gateway.do",
            "app_id": alipay_app["app_id"],
            "app_private_key_pem": alipay_app["app_private_key_pem"],
            "alipay_public_key_pem": alipay_app["alipay_public_key_pem"],
        }
    )
    connector = AlipayConnector(config)
    try:
        with pytest.raises(ChannelUnavailable):
            await connector.query("T_refused")
    finally:
        await connector.aclose()


async def test_certificate_mode_sends_the_certificate_sns_and_checks_alipay_cert_sn(
    alipay_sandbox: SandboxProcess, alipay_control: httpx.AsyncClient
) -> None:
    """The sandbox issues the app, Alipay and root certificates; the connector computes app_cert_sn and
    alipay_root_cert_sn itself (same SNs the sandbox expects), takes the Alipay key from its certificate
    and refuses a reply naming another alipay_cert_sn; a half-configured certificate mode is refused."""
    response = await alipay_control.post("/control/apps", json={"cert_mode": True})
    assert response.status_code == 200, response.text
    app = response.json()
    certs = {k: app[k] for k in ("app_cert_pem", "alipay_cert_pem", "alipay_root_cert_pem")}
    config = _config(alipay_sandbox, app, alipay_public_key_pem=None, **certs)
    connector = AlipayConnector(config)
    try:
        out_trade_no = _order_no("cert")
        await connector.prepay(_prepay(out_trade_no, PaymentScene.NATIVE_QR, "https://merchant.example/notify"))
        assert (await alipay_control.post(f"/control/trades/{out_trade_no}/approve")).status_code == 200
        assert (await connector.query(out_trade_no)).status is TradeStatus.SUCCEEDED
    finally:
        await connector.aclose()

    public_key_only = AlipayConnector(_config(alipay_sandbox, app))  # same app, no certificates: refused
    try:
        with pytest.raises(ChannelError) as refused:
            await public_key_only.query(out_trade_no)
        assert refused.value.code == "isv.missing-app-cert-sn"
    finally:
        await public_key_only.aclose()

    # Alipay rotated its certificate (same key here, another serial, so another SN): the connector still
    # holds the old one, and refuses replies naming the new SN instead of trusting them.
    from cryptography import x509

    held = x509.load_pem_x509_certificate(app["alipay_cert_pem"].encode())
    throwaway = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    renewed = (
        x509.CertificateBuilder()
        .subject_name(held.subject)
        .issuer_name(held.issuer)
        .public_key(held.public_key())
        .serial_number(held.serial_number + 1)
        .not_valid_before(held.not_valid_before_utc)
        .not_valid_after(held.not_valid_after_utc)
        .sign(throwaway, hashes.SHA256())
    )
    stale = AlipayConnector(
        _config(
            alipay_sandbox,
            app,
            alipay_public_key_pem=None,
            **{**certs, "alipay_cert_pem": renewed.public_bytes(serialization.Encoding.PEM).decode()},
        )
    )
    try:
        with pytest.raises(InvalidSignature, match="alipay_cert_sn"):
            await stale.query(out_trade_no)
    finally:
        await stale.aclose()

    with pytest.raises(ValueError, match="certificate mode needs"):
        _config(alipay_sandbox, app, app_cert_pem=app["app_cert_pem"])


async def test_payment_code_paid_at_once_password_step_and_cancel(
    alipay_connector: AlipayConnector, alipay_control: httpx.AsyncClient
) -> None:
    """付款码 (alipay.trade.pay): SUCCEEDED at once; PENDING (10003) until the payer confirms; an
    unconfirmed one cancelled at the deadline ends CLOSED with nothing charged."""

    async def code(**extra: Any) -> str:
        response = await alipay_control.post("/control/payer-codes", json=extra)
        assert response.status_code == 200, response.text
        value: str = response.json()["auth_code"]
        return value

    def charge(out_trade_no: str, auth_code: str) -> PaymentCodeRequest:
        return PaymentCodeRequest(
            out_trade_no=out_trade_no,
            amount_minor=880,
            currency="CNY",
            description="停车场",
            auth_code=auth_code,
            store_id="gate-3",
        )

    first = await code()
    assert payment_code_channel(first) == "alipay"
    paid = await alipay_connector.pay_with_code(charge(_order_no("bar"), first))
    assert (paid.status, paid.amount_minor) == (TradeStatus.SUCCEEDED, 880) and paid.channel_trade_no

    waiting_no = _order_no("bar")
    waiting = await alipay_connector.pay_with_code(charge(waiting_no, await code(password_required=True)))
    assert waiting.status is TradeStatus.PENDING and waiting.channel_trade_no
    assert (await alipay_connector.query(waiting_no)).status is TradeStatus.PENDING
    assert (await alipay_control.post(f"/control/trades/{waiting_no}/approve")).status_code == 200
    assert (await alipay_connector.query(waiting_no)).status is TradeStatus.SUCCEEDED

    abandoned = _order_no("bar")
    await alipay_connector.pay_with_code(charge(abandoned, await code(password_required=True)))
    assert await alipay_connector.cancel(abandoned) == "close"
    assert (await alipay_connector.query(abandoned)).status is TradeStatus.CLOSED

    with pytest.raises(ChannelError) as refused:
        await alipay_connector.pay_with_code(charge(_order_no("bar"), first))
    assert refused.value.code == "ACQ.PAYMENT_AUTH_CODE_INVALID"


async def test_transfer_to_an_alipay_account_in_certificate_mode(
    alipay_sandbox: SandboxProcess, alipay_control: httpx.AsyncClient, alipay_connector: AlipayConnector
) -> None:
    app = (await alipay_control.post("/control/apps", json={"cert_mode": True})).json()
    await alipay_control.put(f"/control/apps/{app['app_id']}/balance", json={"available_minor": 50_000})
    certs = {k: app[k] for k in ("app_cert_pem", "alipay_cert_pem", "alipay_root_cert_pem")}
    connector = AlipayConnector(_config(alipay_sandbox, app, alipay_public_key_pem=None, **certs))
    try:
        out_no = _order_no("tr")
        request = TransferRequest(
            out_transfer_no=out_no,
            amount_minor=30_000,
            currency="CNY",
            payee="payee@example.com",
            payee_type="ALIPAY_LOGON_ID",
            payee_name="张三",
            remark="商户结算",
        )
        sent = await transfers.transfer(connector, request)
        assert (sent.status, sent.amount_minor) == (TransferStatus.SUCCEEDED, 30_000) and sent.channel_transfer_no
        assert (await transfers.transfer(connector, request)).channel_transfer_no == sent.channel_transfer_no
        queried = await transfers.query_transfer(connector, out_no)
        assert (queried.status, queried.amount_minor) == (TransferStatus.SUCCEEDED, 30_000)
        assert (await transfers.query_transfer(connector, "unknown_no")).status is TransferStatus.NOT_FOUND
        with pytest.raises(ChannelError) as poor:
            await transfers.transfer(
                connector,
                TransferRequest(
                    out_transfer_no=_order_no("tr"),
                    amount_minor=20_001,
                    currency="CNY",
                    payee="2088102177846880",
                    payee_type="ALIPAY_USER_ID",
                    remark="超额",
                ),
            )
        assert poor.value.code == "PAYER_BALANCE_NOT_ENOUGH"
    finally:
        await connector.aclose()
    with pytest.raises(ChannelError) as public_key_mode:
        await transfers.transfer(alipay_connector, request)
    assert public_key_mode.value.code == "CERTIFICATE_MODE_REQUIRED"


async def test_jsapi_payment_for_the_buyer_from_oauth(
    alipay_sandbox: SandboxProcess,
    alipay_app: dict[str, Any],
    alipay_connector: AlipayConnector,
    alipay_control: httpx.AsyncClient,
) -> None:
    """The buyer authorises the page / mini-program (auth_code) → oauth_user_id → trade.create for that
    buyer_id → my.tradePay (the sandbox's approve) → the trade is paid; a used code is refused."""
    granted = (await alipay_control.post("/control/oauth-codes", json={"app_id": alipay_app["app_id"]})).json()
    buyer_id = await alipay_connector.oauth_user_id(granted["auth_code"])
    assert buyer_id == granted["user_id"]
    with pytest.raises(ChannelError) as reused:
        await alipay_connector.oauth_user_id(granted["auth_code"])
    assert reused.value.code == "isv.code-invalid"

    out_trade_no = _order_no("js")
    prepaid = await alipay_connector.prepay(
        _prepay(out_trade_no, PaymentScene.MINI_PROGRAM, "https://merchant.example/n", payer_openid=buyer_id)
    )
    assert prepaid.payer_action["type"] == "jsapi" and prepaid.payer_action["trade_no"] == prepaid.channel_trade_no
    assert (await alipay_connector.query(out_trade_no)).status is TradeStatus.PENDING
    assert (await alipay_control.post(f"/control/trades/{out_trade_no}/approve")).status_code == 200
    assert (await alipay_connector.query(out_trade_no)).status is TradeStatus.SUCCEEDED
    with pytest.raises(ChannelError):
        await alipay_connector.prepay(_prepay(_order_no("js"), PaymentScene.JSAPI, "https://merchant.example/n"))
