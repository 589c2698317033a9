"""The WeChat Pay connector against the real WeChat Pay sandbox server, over real HTTP.

Fixtures live in this module (not a conftest) and carry the `wechatpay_` prefix, because other
channels' engineers add tests to this folder.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sandboxes.common.testing import SandboxProcess
from services.cashier.connectors.base import (
    BillLineKind,
    ChannelError,
    ChannelUnavailable,
    InvalidSignature,
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
from services.cashier.connectors.wechatpay import WechatPayConfig, WechatPayConnector, signing, transfers
from services.cashier.domain.payments import PaymentScene


@dataclass
class ReceivedNotification:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class NotificationReceiver:
    """A real HTTP server (stdlib, own thread) standing for the cashier's notify endpoint."""

    url: str
    received: queue.Queue[ReceivedNotification] = field(default_factory=queue.Queue)
    reply_status: int = 200

    def next(self, timeout_seconds: float = 15.0) -> ReceivedNotification:
        return self.received.get(timeout=timeout_seconds)

    def drain(self) -> None:
        while not self.received.empty():
            self.received.get_nowait()


@pytest.fixture(scope="session")
def wechatpay_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    data_dir: Path = tmp_path_factory.mktemp("wechatpay-sandbox")
    env = {
        "JUHE_DATA_DIR": str(data_dir),
        "JUHE_SANDBOX_NOTIFY_SCALE": "0.001",
        "JUHE_SANDBOX_WECHATPAY_REFUND_AUTO_SECONDS": "-1",  # refunds finish only by control API
    }
    with SandboxProcess("sandboxes.wechatpay", port_env="JUHE_SANDBOX_WECHATPAY_PORT", env=env) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def wechatpay_receiver() -> Iterator[NotificationReceiver]:
    holder: dict[str, NotificationReceiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver = holder["receiver"]
            receiver.received.put(ReceivedNotification(self.path, dict(self.headers.items()), body))
            self.send_response(receiver.reply_status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["receiver"] = NotificationReceiver(url=f"http://127.0.0.1:{server.server_address[1]}/notify/wechatpay")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield holder["receiver"]
    server.shutdown()
    server.server_close()


def wechatpay_register(sandbox: SandboxProcess, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{sandbox.base_url}/control/merchants", json={"generate_key_pair": True, **body})
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


@pytest.fixture(scope="session")
def wechatpay_merchant(wechatpay_sandbox: SandboxProcess) -> dict[str, Any]:
    return wechatpay_register(wechatpay_sandbox, {"mchid": "1900000109", "appid": "wxd678efh567hg6787"})


@pytest.fixture(scope="session")
def wechatpay_partner(wechatpay_sandbox: SandboxProcess) -> dict[str, Any]:
    return wechatpay_register(
        wechatpay_sandbox,
        {
            "mchid": "1900000100",
            "appid": "wx8888888888888888",
            "sub_merchants": [{"sub_mchid": "1900000111", "sub_appid": "wxd678efh567hg6999"}],
        },
    )


def wechatpay_config(sandbox: SandboxProcess, merchant: dict[str, Any], **overrides: Any) -> WechatPayConfig:
    credentials: dict[str, Any] = {
        "base_url": sandbox.base_url,
        "merchant_private_key_pem": merchant["merchant_private_key_pem"],
        "merchant_cert_serial": merchant["merchant_cert_serial"],
        "platform_public_key_pem": merchant["platform_public_key_pem"],
        "platform_public_key_id": merchant["platform_public_key_id"],
        "apiv3_key": merchant["apiv3_key"],
        "read_timeout_seconds": 2.0,
        "connect_timeout_seconds": 2.0,
    }
    return WechatPayConfig(**{**credentials, **overrides})


@pytest.fixture
async def wechatpay_connector(
    wechatpay_sandbox: SandboxProcess, wechatpay_merchant: dict[str, Any]
) -> AsyncIterator[WechatPayConnector]:
    config = wechatpay_config(
        wechatpay_sandbox, wechatpay_merchant, mchid=wechatpay_merchant["mchid"], appid="wxd678efh567hg6787"
    )
    async with WechatPayConnector(config) as connector:
        yield connector


@pytest.fixture
async def wechatpay_partner_connector(
    wechatpay_sandbox: SandboxProcess, wechatpay_partner: dict[str, Any]
) -> AsyncIterator[WechatPayConnector]:
    config = wechatpay_config(
        wechatpay_sandbox,
        wechatpay_partner,
        sp_mchid="1900000100",
        sp_appid="wx8888888888888888",
        sub_mchid="1900000111",
        sub_appid="wxd678efh567hg6999",
    )
    async with WechatPayConnector(config) as connector:
        yield connector


@pytest.fixture
def wechatpay_faults(wechatpay_sandbox: SandboxProcess) -> Iterator[str]:
    """The faults URL; every fault is switched off again after the test."""
    url = f"{wechatpay_sandbox.base_url}/control/faults"
    yield url
    httpx.put(
        url,
        json={
            "error_rate": 0.0,
            "latency_ms": 0,
            "dark": False,
            "duplicate_notifications": False,
            "out_of_order_notifications": False,
        },
    ).raise_for_status()


def _no(prefix: str = "T") -> str:
    return f"{prefix}{uuid.uuid4().hex[:20]}"


def _prepay(
    receiver: NotificationReceiver,
    out_trade_no: str,
    amount_minor: int = 1234,
    scene: PaymentScene = PaymentScene.NATIVE_QR,
    notify_path: str = "direct",
    **extra: Any,
) -> PrepayRequest:
    return PrepayRequest(
        out_trade_no=out_trade_no,
        amount_minor=amount_minor,
        currency="CNY",
        description="Juhe test order",
        scene=scene,
        notify_url=f"{receiver.url}/{notify_path}",
        **extra,
    )


async def _http(method: str, url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.request(method, url, **kwargs)


async def _control(sandbox: SandboxProcess, path: str, **kwargs: Any) -> dict[str, Any]:
    response = await _http("POST", f"{sandbox.base_url}/control{path}", **kwargs)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def _register(sandbox: SandboxProcess, body: dict[str, Any]) -> dict[str, Any]:
    response = await _http("POST", f"{sandbox.base_url}/control/merchants", json={"generate_key_pair": True, **body})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _next_for(
    receiver: NotificationReceiver,
    connector: WechatPayConnector,
    out_trade_no: str,
    kind: NotificationKind,
    notify_path: str = "direct",
) -> Any:
    """The next notification of `kind` for this order (others from earlier tests are skipped;
    each merchant has its own notify path because each has its own APIv3 key)."""
    for _ in range(50):
        received = receiver.next()
        if not received.path.endswith("/" + notify_path):
            continue
        notification = connector.parse_notification(received.headers, received.body)
        subject = notification.payment or notification.refund
        if notification.kind == kind and subject is not None and subject.out_trade_no == out_trade_no:
            return notification, received
    raise AssertionError("notification not received")


def _platform_private_key(sandbox_data: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(
        (sandbox_data / "sandboxes" / "wechatpay" / "platform_private_key.pem").read_bytes(), password=None
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


# ---------------------------------------------------------------------------------------- payments
async def test_native_prepay_approve_query_and_notification(
    wechatpay_connector: WechatPayConnector,
    wechatpay_sandbox: SandboxProcess,
    wechatpay_receiver: NotificationReceiver,
) -> None:
    out_trade_no = _no()
    result = await wechatpay_connector.prepay(_prepay(wechatpay_receiver, out_trade_no, attach="a=1"))
    assert result.payer_action["type"] == "qr_code"
    assert result.payer_action["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    page = await _http("GET", result.payer_action["sandbox_pay_url"])
    assert page.status_code == 200 and out_trade_no in page.text and "Approve" in page.text

    pending = await wechatpay_connector.query(out_trade_no)
    assert (pending.status, pending.channel_trade_no, pending.amount_minor) == (TradeStatus.PENDING, None, 1234)

    await _control(wechatpay_sandbox, f"/orders/{out_trade_no}/approve", json={"payer_openid": "oUpF8uMuAJO_M2pxb1Q9"})
    paid = await wechatpay_connector.query(out_trade_no)
    assert paid.status == TradeStatus.SUCCEEDED
    assert paid.channel_trade_no and paid.channel_trade_no.startswith("4200")
    assert paid.amount_minor == 1234 and paid.paid_at is not None and paid.paid_at.tzinfo is not None

    notification, received = _next_for(wechatpay_receiver, wechatpay_connector, out_trade_no, NotificationKind.PAYMENT)
    assert received.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert json.loads(received.body)["event_type"] == "TRANSACTION.SUCCESS"
    assert notification.payment.status == TradeStatus.SUCCEEDED
    assert notification.payment.channel_trade_no == paid.channel_trade_no
    assert notification.payment.amount_minor == 1234
    assert notification.ack_status_code in (200, 204)


async def test_a_wechat_funded_coupon_used_in_the_payment_is_read_from_promotion_detail(
    wechatpay_connector: WechatPayConnector,
    wechatpay_sandbox: SandboxProcess,
    wechatpay_receiver: NotificationReceiver,
) -> None:
    """The payer pays with a 代金券 WeChat funds: the query and the notification both report the channel's
    discount (funded by the channel, settled to the merchant), the amount asked for unchanged."""
    openid = "oCoupon" + uuid.uuid4().hex[:16]
    stock = await _control(
        wechatpay_sandbox,
        "/favor/stocks",
        json={
            "stock_name": "微信立减",
            "coupon_amount": 500,
            "transaction_minimum": 1000,
            "max_coupons": 5,
            "available_merchants": ["1900000109"],
        },
    )
    coupon = await _control(
        wechatpay_sandbox,
        f"/favor/stocks/{stock['stock_id']}/send",
        json={"openid": openid, "appid": "wxd678efh567hg6787"},
    )
    out_trade_no = _no()
    await wechatpay_connector.prepay(_prepay(wechatpay_receiver, out_trade_no, amount_minor=3000))
    await _control(
        wechatpay_sandbox,
        f"/orders/{out_trade_no}/approve",
        json={"payer_openid": openid, "coupon_id": coupon["coupon_id"]},
    )
    paid = await wechatpay_connector.query(out_trade_no)
    assert paid.status == TradeStatus.SUCCEEDED and paid.amount_minor == 3000
    [discount] = paid.channel_discounts
    assert (discount.coupon_id, discount.stock_id, discount.kind) == (coupon["coupon_id"], stock["stock_id"], "CASH")
    assert (discount.amount_minor, discount.channel_minor, discount.merchant_minor, discount.unsettled_minor) == (
        500,
        500,
        0,
        0,
    )
    notification, _ = _next_for(wechatpay_receiver, wechatpay_connector, out_trade_no, NotificationKind.PAYMENT)
    assert notification.payment.channel_discounts == paid.channel_discounts


async def test_declined_order_is_failed(
    wechatpay_connector: WechatPayConnector, wechatpay_sandbox: SandboxProcess, wechatpay_receiver: NotificationReceiver
) -> None:
    out_trade_no = _no()
    await wechatpay_connector.prepay(_prepay(wechatpay_receiver, out_trade_no))
    await _control(wechatpay_sandbox, f"/orders/{out_trade_no}/decline")
    assert (await wechatpay_connector.query(out_trade_no)).status == TradeStatus.FAILED


async def test_jsapi_app_and_h5_payer_actions(
    wechatpay_connector: WechatPayConnector,
    wechatpay_merchant: dict[str, Any],
    wechatpay_receiver: NotificationReceiver,
) -> None:
    merchant_key = serialization.load_pem_private_key(
        wechatpay_merchant["merchant_private_key_pem"].encode(), password=None
    )
    assert isinstance(merchant_key, rsa.RSAPrivateKey)
    public_key = merchant_key.public_key()

    jsapi = (
        await wechatpay_connector.prepay(
            _prepay(wechatpay_receiver, _no(), scene=PaymentScene.MINI_PROGRAM, payer_openid="oUpF8uMuAJO_M2pxb1Q9")
        )
    ).payer_action
    assert jsapi["type"] == "jsapi" and jsapi["signType"] == "RSA" and jsapi["appId"] == "wxd678efh567hg6787"
    assert jsapi["package"] == f"prepay_id={jsapi['prepay_id']}"
    message = f"{jsapi['appId']}\n{jsapi['timeStamp']}\n{jsapi['nonceStr']}\n{jsapi['package']}\n".encode()
    public_key.verify(base64.b64decode(jsapi["paySign"]), message, padding.PKCS1v15(), hashes.SHA256())

    app = (await wechatpay_connector.prepay(_prepay(wechatpay_receiver, _no(), scene=PaymentScene.APP))).payer_action
    assert app["package"] == "Sign=WXPay" and app["partnerid"] == "1900000109"
    message = f"{app['appid']}\n{app['timestamp']}\n{app['noncestr']}\n{app['prepayid']}\n".encode()
    public_key.verify(base64.b64decode(app["sign"]), message, padding.PKCS1v15(), hashes.SHA256())

    h5 = (
        await wechatpay_connector.prepay(
            _prepay(
                wechatpay_receiver,
                _no(),
                scene=PaymentScene.H5,
                payer_client_ip="203.0.113.9",
                return_url="https://shop.example/done",
            )
        )
    ).payer_action
    assert h5["type"] == "redirect" and "redirect_url=https%3A%2F%2Fshop.example%2Fdone" in h5["url"]

    with pytest.raises(ChannelError) as missing_openid:
        await wechatpay_connector.prepay(_prepay(wechatpay_receiver, _no(), scene=PaymentScene.JSAPI))
    assert missing_openid.value.code == "PARAM_ERROR"


async def test_close_answers_204_and_order_is_closed(
    wechatpay_connector: WechatPayConnector, wechatpay_sandbox: SandboxProcess, wechatpay_receiver: NotificationReceiver
) -> None:
    out_trade_no = _no()
    await wechatpay_connector.prepay(_prepay(wechatpay_receiver, out_trade_no))
    await wechatpay_connector.close(out_trade_no)
    assert (await wechatpay_connector.query(out_trade_no)).status == TradeStatus.CLOSED
    approve = await _http("POST", f"{wechatpay_sandbox.base_url}/control/orders/{out_trade_no}/approve")
    assert approve.status_code == 409


async def test_close_raw_reply_is_signed_204_with_empty_body(
    wechatpay_connector: WechatPayConnector,
    wechatpay_sandbox: SandboxProcess,
    wechatpay_merchant: dict[str, Any],
    wechatpay_receiver: NotificationReceiver,
) -> None:
    out_trade_no = _no()
    await wechatpay_connector.prepay(_prepay(wechatpay_receiver, out_trade_no))
    path = f"/v3/pay/transactions/out-trade-no/{out_trade_no}/close"
    body = b'{"mchid":"1900000109"}'
    key = signing.load_private_key(wechatpay_merchant["merchant_private_key_pem"])
    auth = signing.build_authorization(
        mchid="1900000109",
        serial_no=wechatpay_merchant["merchant_cert_serial"],
        private_key=key,
        method="POST",
        canonical_url=path,
        body=body,
    )
    response = await _http(
        "POST",
        wechatpay_sandbox.base_url + path,
        content=body,
        headers={"Authorization": auth, "Content-Type": "application/json", "Accept": "application/json"},
    )
    assert response.status_code == 204 and response.content == b""
    assert response.headers["Wechatpay-Serial"] == wechatpay_merchant["platform_public_key_id"]
    assert response.headers["Wechatpay-Serial"].startswith("PUB_KEY_ID_")
    assert response.headers["Request-ID"]
    signing.verify_wechatpay_signature(
        response.headers,
        b"",
        public_key=signing.load_public_key(wechatpay_merchant["platform_public_key_pem"]),
        public_key_id=wechatpay_merchant["platform_public_key_id"],
        clock_skew_seconds_max=300,
    )


async def test_duplicate_out_trade_no_and_unknown_orders(
    wechatpay_connector: WechatPayConnector, wechatpay_receiver: NotificationReceiver
) -> None:
    out_trade_no = _no()
    first = await wechatpay_connector.prepay(_prepay(wechatpay_receiver, out_trade_no, amount_minor=100))
    again = await wechatpay_connector.prepay(_prepay(wechatpay_receiver, out_trade_no, amount_minor=100))
    assert again.payer_action["code_url"] == first.payer_action["code_url"]  # same body: same prepay
    with pytest.raises(ChannelError) as used:
        await wechatpay_connector.prepay(_prepay(wechatpay_receiver, out_trade_no, amount_minor=200))
    assert (used.value.code, used.value.http_status, used.value.retryable) == ("OUT_TRADE_NO_USED", 403, False)
    missing = await wechatpay_connector.query(_no("NOPE"))
    assert missing.status == TradeStatus.NOT_FOUND
    refund = await wechatpay_connector.query_refund(_no("R"), out_trade_no)
    assert refund.status == RefundStatus.NOT_FOUND


# ---------------------------------------------------------------------------------------- refunds
async def test_refund_processing_then_success_with_notification(
    wechatpay_connector: WechatPayConnector,
    wechatpay_sandbox: SandboxProcess,
    wechatpay_receiver: NotificationReceiver,
) -> None:
    out_trade_no, out_refund_no = _no(), _no("R")
    await wechatpay_connector.prepay(_prepay(wechatpay_receiver, out_trade_no, amount_minor=1000))
    await _control(wechatpay_sandbox, f"/orders/{out_trade_no}/approve")
    request = RefundRequest(
        out_trade_no=out_trade_no,
        out_refund_no=out_refund_no,
        refund_minor=300,
        total_minor=1000,
        currency="CNY",
        reason="damaged",
        notify_url=wechatpay_receiver.url + "/direct",
    )
    created = await wechatpay_connector.refund(request)
    assert (created.status, created.refund_minor, created.out_trade_no) == (RefundStatus.PENDING, 300, out_trade_no)
    assert created.channel_refund_no

    with pytest.raises(ChannelError) as too_much:
        await wechatpay_connector.refund(
            RefundRequest(
                out_trade_no=out_trade_no, out_refund_no=_no("R"), refund_minor=701, total_minor=1000, currency="CNY"
            )
        )
    assert too_much.value.http_status == 400

    assert (await wechatpay_connector.query_refund(out_refund_no, out_trade_no)).status == RefundStatus.PENDING
    await _control(wechatpay_sandbox, f"/refunds/{out_refund_no}/approve")
    done = await wechatpay_connector.query_refund(out_refund_no, out_trade_no)
    assert done.status == RefundStatus.SUCCEEDED and done.succeeded_at is not None
    assert (await wechatpay_connector.query(out_trade_no)).status == TradeStatus.SUCCEEDED  # trade_state REFUND

    notification, received = _next_for(wechatpay_receiver, wechatpay_connector, out_trade_no, NotificationKind.REFUND)
    assert json.loads(received.body)["event_type"] == "REFUND.SUCCESS"
    assert notification.refund.status == RefundStatus.SUCCEEDED
    assert (notification.refund.out_refund_no, notification.refund.refund_minor) == (out_refund_no, 300)

    rest = await wechatpay_connector.refund(
        RefundRequest(
            out_trade_no=out_trade_no, out_refund_no=_no("R"), refund_minor=700, total_minor=1000, currency="CNY"
        )
    )
    assert rest.status == RefundStatus.PENDING


async def test_failed_refund_and_refund_of_unpaid_order(
    wechatpay_connector: WechatPayConnector, wechatpay_sandbox: SandboxProcess, wechatpay_receiver: NotificationReceiver
) -> None:
    out_trade_no, out_refund_no = _no(), _no("R")
    await wechatpay_connector.prepay(_prepay(wechatpay_receiver, out_trade_no, amount_minor=500))
    with pytest.raises(ChannelError):
        await wechatpay_connector.refund(
            RefundRequest(
                out_trade_no=out_trade_no,
                out_refund_no=out_refund_no,
                refund_minor=500,
                total_minor=500,
                currency="CNY",
            )
        )
    await _control(wechatpay_sandbox, f"/orders/{out_trade_no}/approve")
    await wechatpay_connector.refund(
        RefundRequest(
            out_trade_no=out_trade_no, out_refund_no=out_refund_no, refund_minor=500, total_minor=500, currency="CNY"
        )
    )
    await _control(wechatpay_sandbox, f"/refunds/{out_refund_no}/fail")
    assert (await wechatpay_connector.query_refund(out_refund_no, out_trade_no)).status == RefundStatus.FAILED


# ---------------------------------------------------------------------------------------- partner mode
async def test_partner_mode_full_cycle(
    wechatpay_partner_connector: WechatPayConnector,
    wechatpay_sandbox: SandboxProcess,
    wechatpay_receiver: NotificationReceiver,
) -> None:
    connector = wechatpay_partner_connector
    out_trade_no = _no("P")
    jsapi = await connector.prepay(
        _prepay(
            wechatpay_receiver,
            out_trade_no,
            amount_minor=888,
            scene=PaymentScene.JSAPI,
            payer_openid="oSubOpenid123",
            notify_path="partner",
        )
    )
    assert jsapi.payer_action["appId"] == "wxd678efh567hg6999"  # the sub-merchant's appid
    await _control(wechatpay_sandbox, f"/orders/{out_trade_no}/approve", params={"mchid": "1900000100/1900000111"})
    paid = await connector.query(out_trade_no)
    assert paid.status == TradeStatus.SUCCEEDED and paid.amount_minor == 888
    notification, _ = _next_for(wechatpay_receiver, connector, out_trade_no, NotificationKind.PAYMENT, "partner")
    assert notification.payment.channel_trade_no == paid.channel_trade_no
    refund = await connector.refund(
        RefundRequest(
            out_trade_no=out_trade_no, out_refund_no=_no("R"), refund_minor=88, total_minor=888, currency="CNY"
        )
    )
    assert refund.status == RefundStatus.PENDING
    assert (await connector.query_refund(refund.out_refund_no, out_trade_no)).status == RefundStatus.PENDING
    other = _no("P")
    await connector.prepay(_prepay(wechatpay_receiver, other, notify_path="partner"))
    await connector.close(other)
    assert (await connector.query(other)).status == TradeStatus.CLOSED


# ---------------------------------------------------------------------------------------- signatures
async def test_forged_notifications_raise_invalid_signature(
    wechatpay_connector: WechatPayConnector,
    wechatpay_sandbox: SandboxProcess,
    wechatpay_receiver: NotificationReceiver,
    wechatpay_merchant: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    out_trade_no = _no()
    await wechatpay_connector.prepay(_prepay(wechatpay_receiver, out_trade_no))
    await _control(wechatpay_sandbox, f"/orders/{out_trade_no}/approve")
    _, genuine = _next_for(wechatpay_receiver, wechatpay_connector, out_trade_no, NotificationKind.PAYMENT)
    headers, body = genuine.headers, genuine.body

    bad_signature = {**headers, "Wechatpay-Signature": base64.b64encode(b"\x00" * 256).decode()}
    with pytest.raises(InvalidSignature):
        wechatpay_connector.parse_notification(bad_signature, body)

    with pytest.raises(InvalidSignature):  # the body changed after signing
        wechatpay_connector.parse_notification(headers, body.replace(b"TRANSACTION", b"TRANSACTIOM"))

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    timestamp, nonce = str(int(time.time())), "n" * 32
    signed_by_stranger = {
        **headers,
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": signing.sign_sha256_rsa(stranger, signing.response_message(timestamp, nonce, body)),
    }
    with pytest.raises(InvalidSignature):
        wechatpay_connector.parse_notification(signed_by_stranger, body)

    with pytest.raises(InvalidSignature):
        wechatpay_connector.parse_notification({**headers, "Wechatpay-Serial": "PUB_KEY_ID_0000"}, body)

    # Correctly signed by the platform key, but the ciphertext was tampered with: AES-GCM must catch it.
    data_dir = Path(wechatpay_sandbox._env["JUHE_DATA_DIR"])
    platform_key = _platform_private_key(data_dir)
    envelope = json.loads(body)
    sealed = bytearray(base64.b64decode(envelope["resource"]["ciphertext"]))
    sealed[0] ^= 0x01
    envelope["resource"]["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
    tampered = json.dumps(envelope).encode()
    resigned = {
        **headers,
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": signing.sign_sha256_rsa(
            platform_key, signing.response_message(timestamp, nonce, tampered)
        ),
    }
    with pytest.raises(InvalidSignature):
        wechatpay_connector.parse_notification(resigned, tampered)

    # A connector holding the wrong APIv3 key cannot decrypt a genuine notification.
    wrong_key = WechatPayConnector(
        wechatpay_config(
            wechatpay_sandbox, wechatpay_merchant, mchid="1900000109", appid="wxd678efh567hg6787", apiv3_key="k" * 32
        )
    )
    with pytest.raises(InvalidSignature):
        wrong_key.parse_notification(headers, body)
    await wrong_key.aclose()

    stale = {**headers, "Wechatpay-Timestamp": str(int(time.time()) - 301), "Wechatpay-Nonce": nonce}
    stale["Wechatpay-Signature"] = signing.sign_sha256_rsa(
        platform_key, signing.response_message(stale["Wechatpay-Timestamp"], nonce, body)
    )
    with pytest.raises(InvalidSignature):
        wechatpay_connector.parse_notification(stale, body)


async def test_request_with_bad_signature_gets_401_sign_error(
    wechatpay_sandbox: SandboxProcess,
    wechatpay_merchant: dict[str, Any],
    wechatpay_receiver: NotificationReceiver,
) -> None:
    impostor_key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    config = wechatpay_config(
        wechatpay_sandbox,
        wechatpay_merchant,
        mchid="1900000109",
        appid="wxd678efh567hg6787",
        merchant_private_key_pem=impostor_key,
    )
    async with WechatPayConnector(config) as impostor:
        with pytest.raises(ChannelError) as refused:
            await impostor.query(_no())
    assert (refused.value.code, refused.value.http_status) == ("SIGN_ERROR", 401)

    # A correctly signed request whose body is changed on the way: the sandbox signs over raw bytes.
    key = signing.load_private_key(wechatpay_merchant["merchant_private_key_pem"])
    path = "/v3/pay/transactions/native"
    signed_body = json.dumps(
        {
            "appid": "wxd678efh567hg6787",
            "mchid": "1900000109",
            "description": "x",
            "out_trade_no": _no(),
            "notify_url": wechatpay_receiver.url + "/direct",
            "amount": {"total": 1, "currency": "CNY"},
        }
    ).encode()
    auth = signing.build_authorization(
        mchid="1900000109",
        serial_no=wechatpay_merchant["merchant_cert_serial"],
        private_key=key,
        method="POST",
        canonical_url=path,
        body=signed_body,
    )
    altered = signed_body.replace(b'"total": 1', b'"total": 2')
    sent = await _http(
        "POST",
        wechatpay_sandbox.base_url + path,
        content=altered,
        headers={"Authorization": auth, "Content-Type": "application/json"},
    )
    assert sent.status_code == 401 and sent.json()["code"] == "SIGN_ERROR"
    genuine = await _http(
        "POST",
        wechatpay_sandbox.base_url + path,
        content=signed_body,
        headers={"Authorization": auth, "Content-Type": "application/json"},
    )
    assert genuine.status_code == 200 and "code_url" in genuine.json()


async def test_response_signed_by_unexpected_key_is_rejected(
    wechatpay_sandbox: SandboxProcess,
    wechatpay_merchant: dict[str, Any],
) -> None:
    other_public = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    for overrides in (
        {"platform_public_key_pem": other_public},
        {"platform_public_key_id": "PUB_KEY_ID_0114232134912410000000000000"},
    ):
        config = wechatpay_config(
            wechatpay_sandbox, wechatpay_merchant, mchid="1900000109", appid="wxd678efh567hg6787", **overrides
        )
        async with WechatPayConnector(config) as connector:
            with pytest.raises(InvalidSignature):
                await connector.query(_no())  # a signed 404 must not be believed either


# ---------------------------------------------------------------------------------------- bills
async def test_bill_download_matches_orders(
    wechatpay_sandbox: SandboxProcess, wechatpay_receiver: NotificationReceiver
) -> None:
    merchant = await _register(wechatpay_sandbox, {"mchid": "1900000222", "appid": "wxbill000000000001"})
    for bill_gzip in (True, False):
        config = wechatpay_config(
            wechatpay_sandbox, merchant, mchid="1900000222", appid="wxbill000000000001", bill_gzip=bill_gzip
        )
        async with WechatPayConnector(config) as connector:
            if bill_gzip:
                paid_a, paid_b, unpaid, refund_no = _no("B"), _no("B"), _no("B"), _no("R")
                await connector.prepay(_prepay(wechatpay_receiver, paid_a, amount_minor=8888, notify_path="bill"))
                await connector.prepay(_prepay(wechatpay_receiver, paid_b, amount_minor=1))
                await connector.prepay(_prepay(wechatpay_receiver, unpaid, amount_minor=500))
                await _control(wechatpay_sandbox, f"/orders/{paid_a}/approve")
                await _control(wechatpay_sandbox, f"/orders/{paid_b}/approve")
                await connector.refund(
                    RefundRequest(
                        out_trade_no=paid_a, out_refund_no=refund_no, refund_minor=888, total_minor=8888, currency="CNY"
                    )
                )
                await _control(wechatpay_sandbox, f"/refunds/{refund_no}/approve")
                paid_at = (await connector.query(paid_a)).paid_at
            assert paid_at is not None  # set by the first (gzip) round, read again by the second
            bill = await connector.download_bill(paid_at.date())
        payments = {line.out_trade_no: line for line in bill.lines if line.kind == BillLineKind.PAYMENT}
        refunds = [line for line in bill.lines if line.kind == BillLineKind.REFUND]
        assert set(payments) == {paid_a, paid_b}
        assert (payments[paid_a].amount_minor, payments[paid_a].fee_minor) == (8888, 53)  # 53.328 fen
        assert (payments[paid_b].amount_minor, payments[paid_b].fee_minor) == (1, 0)  # 0.006 fen
        assert payments[paid_a].status == "SUCCESS" and payments[paid_a].channel_trade_no.startswith("4200")
        (refund,) = refunds
        assert (refund.out_trade_no, refund.out_refund_no, refund.amount_minor) == (paid_a, refund_no, 888)
        assert refund.fee_minor == -5 and refund.status == "SUCCESS"  # -5.328 fen
        assert bill.raw_sha1 and len(bill.raw_sha1) == 40

    assert paid_at is not None
    async with WechatPayConnector(config) as connector:
        empty = await connector.download_bill(paid_at.date().replace(year=2001))
    assert empty.lines == []


async def test_bill_discrepancy_injection(
    wechatpay_sandbox: SandboxProcess, wechatpay_receiver: NotificationReceiver
) -> None:
    merchant = await _register(wechatpay_sandbox, {"mchid": "1900000333", "appid": "wxbill000000000002"})
    config = wechatpay_config(wechatpay_sandbox, merchant, mchid="1900000333", appid="wxbill000000000002")
    async with WechatPayConnector(config) as connector:
        kept, dropped, changed, failed = _no("D"), _no("D"), _no("D"), _no("D")
        for number in (kept, dropped, changed, failed):
            await connector.prepay(_prepay(wechatpay_receiver, number, amount_minor=1000))
        for number in (kept, dropped, changed):
            await _control(wechatpay_sandbox, f"/orders/{number}/approve")
        await _control(wechatpay_sandbox, f"/orders/{failed}/decline")
        paid_at = (await connector.query(kept)).paid_at
        assert paid_at is not None
        day = paid_at.date().isoformat()
        await _control(
            wechatpay_sandbox, f"/bills/{day}/discrepancies", json={"kind": "drop_line", "out_trade_no": dropped}
        )
        await _control(
            wechatpay_sandbox,
            f"/bills/{day}/discrepancies",
            json={"kind": "change_amount", "out_trade_no": changed, "amount_minor": 999},
        )
        await _control(
            wechatpay_sandbox, f"/bills/{day}/discrepancies", json={"kind": "report_success", "out_trade_no": failed}
        )
        bill = await connector.download_bill(paid_at.date())
    amounts = {line.out_trade_no: line.amount_minor for line in bill.lines}
    assert amounts == {kept: 1000, changed: 999, failed: 1000}


# ---------------------------------------------------------------------------------------- faults
async def test_error_rate_and_dark_faults(
    wechatpay_connector: WechatPayConnector, wechatpay_faults: str, wechatpay_receiver: NotificationReceiver
) -> None:
    (await _http("PUT", wechatpay_faults, json={"error_rate": 1.0})).raise_for_status()
    with pytest.raises(ChannelUnavailable, match="SYSTEM_ERROR"):
        await wechatpay_connector.prepay(_prepay(wechatpay_receiver, _no()))
    (await _http("PUT", wechatpay_faults, json={"error_rate": 0.0, "dark": True})).raise_for_status()
    with pytest.raises(ChannelUnavailable, match="timeout"):
        await wechatpay_connector.query(_no())
    (await _http("PUT", wechatpay_faults, json={"dark": False})).raise_for_status()
    assert (await wechatpay_connector.query(_no())).status == TradeStatus.NOT_FOUND


async def test_unreachable_channel_is_unavailable(
    wechatpay_sandbox: SandboxProcess, wechatpay_merchant: dict[str, Any]
) -> None:
    from sandboxes.common.testing import free_port

    config = wechatpay_config(
        wechatpay_sandbox,
        wechatpay_merchant,
        mchid="1900000109",
        appid="wxd678efh567hg6787",
        base_url=f"http://127.0.0.1:{free_port()}",
    )
    async with WechatPayConnector(config) as connector:
        with pytest.raises(ChannelUnavailable):
            await connector.query(_no())


async def test_platform_certificate_mode_downloads_and_follows_a_rotation(
    wechatpay_sandbox: SandboxProcess,
    wechatpay_receiver: NotificationReceiver,
) -> None:
    """No platform public key configured: the first reply names a certificate serial the connector does
    not hold, so it downloads /v3/certificates (decrypted with the APIv3 key) and verifies with it; after
    the sandbox rotates its certificate the next reply names the new serial and the connector downloads
    again. A callback signed by a held certificate verifies; the certificates can be preloaded."""
    merchant = await _register(
        wechatpay_sandbox,
        {"mchid": "1900000333", "appid": "wxd678efh567hg6787", "platform_verification": "certificate"},
    )
    config = wechatpay_config(
        wechatpay_sandbox,
        merchant,
        mchid="1900000333",
        appid="wxd678efh567hg6787",
        platform_public_key_pem=None,
        platform_public_key_id=None,
    )
    async with WechatPayConnector(config) as connector:
        first = _no("C")
        await connector.prepay(_prepay(wechatpay_receiver, first, notify_path="cert"))
        held = await connector.refresh_platform_certificates()
        assert held == sorted(c["serial_no"] for c in merchant["platform_certificates"])

        rotated = (await _control(wechatpay_sandbox, "/platform-certificates/rotate"))["serial_no"]
        assert (await connector.query(first)).status is TradeStatus.PENDING  # new serial → downloaded again
        assert rotated in await connector.refresh_platform_certificates()
        await _control(wechatpay_sandbox, f"/orders/{first}/approve")
        notification, _ = _next_for(wechatpay_receiver, connector, first, NotificationKind.PAYMENT, notify_path="cert")
        assert notification.payment.status is TradeStatus.SUCCEEDED

    preloaded = wechatpay_config(
        wechatpay_sandbox,
        merchant,
        mchid="1900000333",
        appid="wxd678efh567hg6787",
        platform_public_key_pem=None,
        platform_public_key_id=None,
        platform_certificates_pem=[
            c["pem"]
            for c in (await _http("GET", f"{wechatpay_sandbox.base_url}/control/platform-certificates")).json()[
                "certificates"
            ]
        ],
    )
    async with WechatPayConnector(preloaded) as connector:
        assert (await connector.query(first)).status is TradeStatus.SUCCEEDED
        second = _no("C")
        await connector.prepay(_prepay(wechatpay_receiver, second, notify_path="cert"))
        await _control(wechatpay_sandbox, f"/orders/{second}/approve")
        notification, _ = _next_for(wechatpay_receiver, connector, second, NotificationKind.PAYMENT, notify_path="cert")
        assert notification.payment.out_trade_no == second

    with pytest.raises(ValueError, match="go together"):  # a public key id without its key is a mistake
        wechatpay_config(wechatpay_sandbox, merchant, mchid="1900000333", appid="wx", platform_public_key_pem=None)


async def _wechat_payer_code(sandbox: SandboxProcess, **extra: Any) -> str:
    response = await _http("POST", f"{sandbox.base_url}/control/payer-codes", json=extra)
    assert response.status_code == 200, response.text
    code: str = response.json()["auth_code"]
    return code


async def test_payment_code_paid_at_once_password_step_and_reverse(
    wechatpay_sandbox: SandboxProcess,
    wechatpay_connector: WechatPayConnector,
) -> None:
    """付款码 through the connector: SUCCEEDED at once; PENDING (USERPAYING) until the payer confirms;
    an unconfirmed one reversed at the deadline ends CLOSED (REVOKED), nothing charged."""

    def charge(out_trade_no: str, code: str) -> PaymentCodeRequest:
        return PaymentCodeRequest(
            out_trade_no=out_trade_no,
            amount_minor=1500,
            currency="CNY",
            description="食堂",
            auth_code=code,
            device_id="POS-7",
            store_id="canteen-1",
        )

    code = await _wechat_payer_code(wechatpay_sandbox)
    assert payment_code_channel(code) == "wechatpay"
    paid = await wechatpay_connector.pay_with_code(charge(_no("P"), code))
    assert (paid.status, paid.amount_minor) == (TradeStatus.SUCCEEDED, 1500) and paid.channel_trade_no

    waiting_no = _no("P")
    waiting = await wechatpay_connector.pay_with_code(
        charge(waiting_no, await _wechat_payer_code(wechatpay_sandbox, password_required=True))
    )
    assert (waiting.status, waiting.detail) == (TradeStatus.PENDING, "USERPAYING")
    assert (await wechatpay_connector.query(waiting_no)).status is TradeStatus.PENDING
    await _control(wechatpay_sandbox, f"/orders/{waiting_no}/approve")
    assert (await wechatpay_connector.query(waiting_no)).status is TradeStatus.SUCCEEDED

    abandoned = _no("P")
    await wechatpay_connector.pay_with_code(
        charge(abandoned, await _wechat_payer_code(wechatpay_sandbox, password_required=True))
    )
    await wechatpay_connector.reverse(abandoned)
    reversed_trade = await wechatpay_connector.query(abandoned)
    assert (reversed_trade.status, reversed_trade.channel_trade_no) == (TradeStatus.CLOSED, None)

    with pytest.raises(ChannelError) as refused:  # a code pays once
        await wechatpay_connector.pay_with_code(charge(_no("P"), code))
    assert refused.value.code == "AUTH_CODE_INVALID"


async def test_transfer_to_change_confirmed_cancelled_and_expired(
    wechatpay_sandbox: SandboxProcess,
    wechatpay_receiver: NotificationReceiver,
    wechatpay_connector: WechatPayConnector,
) -> None:
    """商家转账 through the connector: WAITING_USER with package_info; the user confirms → SUCCEEDED by
    callback and query; cancelled while waiting; left unconfirmed until it expires → CANCELLED."""

    def request(out_no: str, amount: int, name: str | None = None) -> TransferRequest:
        return TransferRequest(
            out_transfer_no=out_no,
            amount_minor=amount,
            currency="CNY",
            payee="o-MYE42l80oelYMDE34nYD456Xoy",
            payee_name=name,
            remark="钱包提现",
            notify_url=f"{wechatpay_receiver.url}/transfer",
            scene_report=(("岗位类型", "骑手"), ("报酬说明", "周结")),
        )

    confirmed_no = uuid.uuid4().hex[:20]
    sent = await transfers.transfer(wechatpay_connector, request(confirmed_no, 5000, name="张三"))
    assert sent.status is TransferStatus.WAITING_USER and sent.user_action and sent.user_action["package_info"]
    assert (
        await transfers.transfer(wechatpay_connector, request(confirmed_no, 5000, name="张三"))
    ).channel_transfer_no == sent.channel_transfer_no  # same out_bill_no + body: the same bill
    await _control(wechatpay_sandbox, f"/transfer-bills/{confirmed_no}/confirm")
    for _ in range(50):
        received = wechatpay_receiver.next()
        if received.path.endswith("/transfer"):
            result = transfers.parse_transfer_notification(wechatpay_connector, received.headers, received.body)
            if result.out_transfer_no == confirmed_no:
                break
    assert (result.status, result.amount_minor) == (TransferStatus.SUCCEEDED, 5000)
    assert (await transfers.query_transfer(wechatpay_connector, confirmed_no)).status is TransferStatus.SUCCEEDED

    cancelled_no = uuid.uuid4().hex[:20]
    await transfers.transfer(wechatpay_connector, request(cancelled_no, 100))
    assert (await transfers.cancel_transfer(wechatpay_connector, cancelled_no)).status is TransferStatus.CANCELLED

    expired_no = uuid.uuid4().hex[:20]
    await transfers.transfer(wechatpay_connector, request(expired_no, 100))
    await _control(wechatpay_sandbox, f"/transfer-bills/{expired_no}/expire")
    expired = await transfers.query_transfer(wechatpay_connector, expired_no)
    assert (expired.status, expired.fail_reason) == (TransferStatus.CANCELLED, "OVERDUE_CLOSE")
    assert (await transfers.query_transfer(wechatpay_connector, "nosuchbill00")).status is TransferStatus.NOT_FOUND
    with pytest.raises(ChannelError):  # from 2,000 yuan WeChat needs the payee's real name
        await transfers.transfer(wechatpay_connector, request(uuid.uuid4().hex[:20], 200_000))
