"""Public Alipay SDKs (pinned dev deps) against the sandbox, unmodified but for the gateway URL and keys.

- python-alipay-sdk (`alipay.AliPay`, public-key mode; `alipay.DCAliPay`, certificate mode): every
  call's reply is verified by the SDK itself (`verified_sync_response`), order strings and page URLs
  are the SDK's own `sign_data`, notifications and the return redirect are checked with its `verify`.
- The official alipay-sdk-python (`alipay.aop.api`, public-key mode only: it has no certificate mode):
  `DefaultAlipayClient.execute` verifies each reply; notifications with its `verify_with_rsa`. Its
  transport cannot reach a gateway on a non-default port (`WebUtils.get_http_connection` always
  connects to 80/443 and fails on `url += port`), so that one function is replaced by the same code
  with the port honoured; signing, request building, reply parsing and verification stay the SDK's.

Both SDKs stamp `timestamp` with the local wall clock and Alipay reads it as China time
(docs/protocols/alipay.md §11), so these tests run with TZ=Asia/Shanghai, as a merchant's server in China does.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from alipay import AliPay, DCAliPay
from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
from alipay.aop.api.request.AlipayDataDataserviceBillDownloadurlQueryRequest import (
    AlipayDataDataserviceBillDownloadurlQueryRequest,
)
from alipay.aop.api.request.AlipayMarketingActivityOrdervoucherAppendRequest import (
    AlipayMarketingActivityOrdervoucherAppendRequest,
)
from alipay.aop.api.request.AlipayMarketingActivityOrdervoucherCreateRequest import (
    AlipayMarketingActivityOrdervoucherCreateRequest,
)
from alipay.aop.api.request.AlipayMarketingActivityOrdervoucherQueryRequest import (
    AlipayMarketingActivityOrdervoucherQueryRequest,
)
from alipay.aop.api.request.AlipayMarketingActivityOrdervoucherSendRequest import (
    AlipayMarketingActivityOrdervoucherSendRequest,
)
from alipay.aop.api.request.AlipayMarketingActivityOrdervoucherStopRequest import (
    AlipayMarketingActivityOrdervoucherStopRequest,
)
from alipay.aop.api.request.AlipaySystemOauthTokenRequest import (
    AlipaySystemOauthTokenRequest,
)
from alipay.aop.api.request.AlipayTradeCancelRequest import AlipayTradeCancelRequest
from alipay.aop.api.request.AlipayTradeCloseRequest import AlipayTradeCloseRequest
from alipay.aop.api.request.AlipayTradeCreateRequest import AlipayTradeCreateRequest
from alipay.aop.api.request.AlipayTradeFastpayRefundQueryRequest import (
    AlipayTradeFastpayRefundQueryRequest,
)
from alipay.aop.api.request.AlipayTradePagePayRequest import AlipayTradePagePayRequest
from alipay.aop.api.request.AlipayTradePayRequest import AlipayTradePayRequest
from alipay.aop.api.request.AlipayTradePrecreateRequest import (
    AlipayTradePrecreateRequest,
)
from alipay.aop.api.request.AlipayTradeQueryRequest import AlipayTradeQueryRequest
from alipay.aop.api.request.AlipayTradeRefundRequest import AlipayTradeRefundRequest
from alipay.aop.api.util.SignatureUtils import verify_with_rsa
from cryptography.hazmat.primitives import serialization

from sandboxes.common.testing import CallbackReceiver, SandboxProcess

PORT_ENV = "JUHE_SANDBOX_ALIPAY_PORT"
# python-alipay-sdk reads certificate issuers through pyOpenSSL's deprecated X509 API; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:X509.get_issuer is deprecated:DeprecationWarning")


@pytest.fixture(scope="module", autouse=True)
def china_time() -> Iterator[None]:
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Shanghai"
    time.tzset()
    yield
    if previous is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = previous
    time.tzset()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    data_dir: Path = tmp_path_factory.mktemp("alipay-sdk")
    env = {"JUHE_DATA_DIR": str(data_dir), "JUHE_SANDBOX_NOTIFY_SCALE": "0.001"}
    with SandboxProcess("sandboxes.alipay", port_env=PORT_ENV, env=env) as process:
        yield process


@pytest.fixture(scope="module")
def receiver() -> Iterator[CallbackReceiver]:
    server = CallbackReceiver(reply_body=b"success")
    yield server
    server.close()


def _app(sandbox: SandboxProcess, **extra: Any) -> dict[str, Any]:
    response = httpx.post(f"{sandbox.base_url}/control/apps", json=extra)
    response.raise_for_status()
    registered: dict[str, Any] = response.json()
    return registered


def _sdk(sandbox: SandboxProcess, app: dict[str, Any], notify_url: str) -> Any:
    client = AliPay(
        appid=app["app_id"],
        app_notify_url=notify_url,
        app_private_key_string=app["app_private_key_pem"],
        alipay_public_key_string=app["alipay_public_key_pem"],
        sign_type="RSA2",
    )
    client._gateway = f"{sandbox.base_url}/gateway.do"
    return client


def _cert_sdk(sandbox: SandboxProcess, app: dict[str, Any], notify_url: str) -> Any:
    """python-alipay-sdk in certificate mode (an app registered with `cert_mode`)."""
    client = DCAliPay(
        appid=app["app_id"],
        app_notify_url=notify_url,
        app_private_key_string=app["app_private_key_pem"],
        app_public_key_cert_string=app["app_cert_pem"],
        alipay_public_key_cert_string=app["alipay_cert_pem"],
        alipay_root_cert_string=app["alipay_root_cert_pem"],
    )
    client._gateway = f"{sandbox.base_url}/gateway.do"
    return client


def _no(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(8)}"


def _control(sandbox: SandboxProcess, path: str) -> dict[str, Any]:
    response = httpx.post(f"{sandbox.base_url}/control{path}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _verify_notification(sdk: Any, body: bytes) -> dict[str, str]:
    """What a merchant's notify handler does with python-alipay-sdk: verify(data without sign, sign)."""
    data = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    signature = data.pop("sign")
    assert sdk.verify(dict(data), signature), "python-alipay-sdk refused the notification signature"
    return data


def _trade_status_notification(
    receiver: CallbackReceiver, name: str, sdk: Any, out_trade_no: str, status: str
) -> dict[str, str]:
    for _ in range(10):
        _headers, body = receiver.next(name)
        data = _verify_notification(sdk, body)
        if data["out_trade_no"] == out_trade_no and data["trade_status"] == status:
            return data
    raise AssertionError(f"no {status} notification for {out_trade_no}")


def test_python_alipay_sdk_public_key_mode(sandbox: SandboxProcess, receiver: CallbackReceiver) -> None:
    app = _app(sandbox)
    sdk = _sdk(sandbox, app, receiver.url("py"))

    paid = _no("py")
    created = sdk.api_alipay_trade_precreate(subject="停车费", out_trade_no=paid, total_amount=88.88)  # a JSON number
    assert created["code"] == "10000" and created["qr_code"]
    assert sdk.api_alipay_trade_query(out_trade_no=paid)["sub_code"] == "ACQ.TRADE_NOT_EXIST"  # not scanned yet
    _control(sandbox, f"/trades/{paid}/approve")
    notified = _trade_status_notification(receiver, "py", sdk, paid, "TRADE_SUCCESS")
    assert notified["total_amount"] == "88.88"
    queried = sdk.api_alipay_trade_query(out_trade_no=paid)
    assert (queried["trade_status"], queried["total_amount"]) == ("TRADE_SUCCESS", "88.88")

    refund = sdk.api_alipay_trade_refund(refund_amount=8.88, out_trade_no=paid, out_request_no="r1")
    assert (refund["code"], refund["fund_change"], refund["refund_fee"]) == ("10000", "Y", "8.88")
    refund_query = sdk.api_alipay_trade_fastpay_refund_query(out_request_no="r1", out_trade_no=paid)
    assert refund_query["refund_amount"] == "8.88"
    assert (
        sdk.api_alipay_trade_refund(refund_amount="1.005", out_trade_no=paid, out_request_no="r2")["sub_code"]
        == "ACQ.INVALID_PARAMETER"
    )  # more than two decimals: refused, never rounded

    _control(sandbox, f"/trades/{paid}/finish")
    assert _trade_status_notification(receiver, "py", sdk, paid, "TRADE_FINISHED")["trade_no"] == queried["trade_no"]
    assert sdk.api_alipay_trade_query(out_trade_no=paid)["trade_status"] == "TRADE_FINISHED"
    assert (
        sdk.api_alipay_trade_refund(refund_amount="1.00", out_trade_no=paid, out_request_no="r3")["sub_code"]
        == "ACQ.TRADE_HAS_FINISHED"
    )

    # The documented precreate flow: poll, then cancel at the deadline (the QR code is dead afterwards).
    abandoned = _no("py")
    sdk.api_alipay_trade_precreate(subject="abandoned", out_trade_no=abandoned, total_amount="5.00")
    cancelled = sdk.api_alipay_trade_cancel(out_trade_no=abandoned)
    assert (cancelled["code"], cancelled["action"], cancelled["retry_flag"]) == ("10000", "close", "N")
    scanned_late = httpx.post(f"{sandbox.base_url}/control/trades/{abandoned}/approve")
    assert scanned_late.status_code == 409
    paid_then_cancelled = _no("py")
    sdk.api_alipay_trade_precreate(subject="cancel after pay", out_trade_no=paid_then_cancelled, total_amount="3.00")
    _control(sandbox, f"/trades/{paid_then_cancelled}/approve")
    assert sdk.api_alipay_trade_cancel(out_trade_no=paid_then_cancelled)["action"] == "refund"
    assert sdk.api_alipay_trade_query(out_trade_no=paid_then_cancelled)["trade_status"] == "TRADE_CLOSED"

    to_close = _no("py")
    sdk.api_alipay_trade_precreate(subject="close", out_trade_no=to_close, total_amount="1.00")
    _control(sandbox, f"/trades/{to_close}/scan")
    assert sdk.api_alipay_trade_close(out_trade_no=to_close)["code"] == "10000"

    bill = sdk.server_api(
        "alipay.data.dataservice.bill.downloadurl.query", {"bill_type": "trade", "bill_date": time.strftime("%Y-%m-%d")}
    )
    assert httpx.get(bill["bill_download_url"]).content[:2] == b"PK"  # a zip
    account = sdk.server_api(
        "alipay.data.dataservice.bill.downloadurl.query",
        {"bill_type": "signcustomer", "bill_date": time.strftime("%Y-%m-%d")},
    )
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(httpx.get(account["bill_download_url"]).content)) as archive:
        (member,) = archive.infolist()
        text = archive.read(member).decode("gbk")
    assert text.startswith("#支付宝账务明细查询") and f"{queried['trade_no']}\t" in text
    assert "在线支付" in text and "+88.88" in text and "交易退款" in text and "-8.88" in text


def test_python_alipay_sdk_browser_and_app_flows(sandbox: SandboxProcess, receiver: CallbackReceiver) -> None:
    app = _app(sandbox)
    sdk = _sdk(sandbox, app, receiver.url("web"))
    gateway = f"{sandbox.base_url}/gateway.do?"
    for build in (sdk.api_alipay_trade_wap_pay, sdk.api_alipay_trade_page_pay):  # wap: QUICK_WAP_PAY
        out_trade_no = _no("web")
        order_string = build(
            subject="网页支付",
            out_trade_no=out_trade_no,
            total_amount=12.5,
            return_url="https://merchant.example/return",
        )
        opened = httpx.get(gateway + order_string)
        assert opened.status_code == 303, opened.text
        redirect = _control(sandbox, f"/trades/{out_trade_no}/approve")["return_redirect_url"]
        returned = dict(parse_qsl(urlsplit(redirect).query))
        signature = returned.pop("sign")
        assert sdk.verify(returned, signature)  # the return_url check, as the SDK documents it
        assert (
            _trade_status_notification(receiver, "web", sdk, out_trade_no, "TRADE_SUCCESS")["total_amount"] == "12.50"
        )

    out_trade_no = _no("app")
    order_string = sdk.api_alipay_trade_app_pay(subject="App", out_trade_no=out_trade_no, total_amount="2.00")
    opened = httpx.post(f"{sandbox.base_url}/control/app_pay", json={"order_string": order_string})
    assert opened.status_code == 200 and opened.json()["status"] == "WAIT_BUYER_PAY"


def test_python_alipay_sdk_certificate_mode(sandbox: SandboxProcess, receiver: CallbackReceiver) -> None:
    app = _app(sandbox, cert_mode=True)
    sdk = _cert_sdk(sandbox, app, receiver.url("cert"))
    assert (sdk.app_cert_sn, sdk.alipay_root_cert_sn) == (app["app_cert_sn"], app["alipay_root_cert_sn"])

    out_trade_no = _no("cert")
    assert (
        sdk.api_alipay_trade_precreate(subject="cert", out_trade_no=out_trade_no, total_amount="1.00")["code"]
        == "10000"
    )
    raw = httpx.get(
        f"{sandbox.base_url}/gateway.do?"
        + sdk.sign_data(sdk.build_body("alipay.trade.query", {"out_trade_no": out_trade_no}))
    ).json()
    assert raw["alipay_cert_sn"] == app["alipay_cert_sn"]
    _control(sandbox, f"/trades/{out_trade_no}/approve")
    assert sdk.api_alipay_trade_query(out_trade_no=out_trade_no)["trade_status"] == "TRADE_SUCCESS"
    _trade_status_notification(receiver, "cert", sdk, out_trade_no, "TRADE_SUCCESS")

    public_key_mode = _sdk(
        sandbox, {**app, "alipay_public_key_pem": app["alipay_public_key_pem"]}, receiver.url("cert")
    )  # the same app without its certificates is refused
    refused = public_key_mode.api_alipay_trade_query(out_trade_no=out_trade_no)
    assert (refused["code"], refused["sub_code"]) == ("40001", "isv.missing-app-cert-sn")


def _http_connection_with_port(url: str, query_string: str, timeout: float) -> tuple[str, Any]:
    """WebUtils.get_http_connection as written, minus its port bug (see the module docstring)."""
    import http.client

    parsed = urlsplit(url)
    assert parsed.hostname is not None, url
    connection = http.client.HTTPConnection(host=parsed.hostname, port=parsed.port or 80, timeout=timeout)
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path}?{query_string}", connection


@pytest.fixture
def official_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    from alipay.aop.api.util import WebUtils

    monkeypatch.setattr(WebUtils, "get_http_connection", _http_connection_with_port)


def _official(sandbox: SandboxProcess, app: dict[str, Any]) -> Any:
    """The official SDK wants a PKCS#1 private key (Alipay's key tool offers both formats)."""
    key = serialization.load_pem_private_key(app["app_private_key_pem"].encode(), password=None)
    pkcs1 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    config = AlipayClientConfig()
    config.server_url = f"{sandbox.base_url}/gateway.do"
    config.app_id = app["app_id"]
    config.app_private_key = pkcs1
    config.alipay_public_key = app["alipay_public_key_pem"]
    return DefaultAlipayClient(alipay_client_config=config)


def _execute(client: Any, request_class: Any, biz: dict[str, Any], **common: str) -> dict[str, Any]:
    request = request_class()
    request.biz_content = biz
    for name, value in common.items():
        setattr(request, name, value)
    data: dict[str, Any] = json.loads(client.execute(request))  # the SDK verified the reply's signature
    return data


def test_official_alipay_sdk_public_key_mode(
    sandbox: SandboxProcess, receiver: CallbackReceiver, official_transport: None
) -> None:
    app = _app(sandbox)
    client = _official(sandbox, app)
    out_trade_no = _no("off")
    created = _execute(
        client,
        AlipayTradePrecreateRequest,
        {"out_trade_no": out_trade_no, "total_amount": 66.6, "subject": "官方SDK"},
        notify_url=receiver.url("official"),
    )
    assert created["code"] == "10000"
    _control(sandbox, f"/trades/{out_trade_no}/approve")
    _headers, body = receiver.next("official")
    params = dict(parse_qsl(body.decode("utf-8")))
    signature = params.pop("sign")
    params.pop("sign_type")
    message = "&".join(f"{k}={params[k]}" for k in sorted(params)).encode("utf-8")
    assert verify_with_rsa(app["alipay_public_key_pem"], message, signature)
    assert params["total_amount"] == "66.60"

    queried = _execute(client, AlipayTradeQueryRequest, {"out_trade_no": out_trade_no})
    assert queried["trade_status"] == "TRADE_SUCCESS"
    refund = _execute(
        client,
        AlipayTradeRefundRequest,
        {"out_trade_no": out_trade_no, "refund_amount": "6.60", "out_request_no": "o1"},
    )
    assert refund["fund_change"] == "Y"
    assert (
        _execute(client, AlipayTradeFastpayRefundQueryRequest, {"out_trade_no": out_trade_no, "out_request_no": "o1"})[
            "refund_amount"
        ]
        == "6.60"
    )
    assert _execute(client, AlipayTradeCancelRequest, {"out_trade_no": out_trade_no})["action"] == "refund"

    unpaid = _no("off")
    _execute(client, AlipayTradePrecreateRequest, {"out_trade_no": unpaid, "total_amount": "1.00", "subject": "x"})
    _control(sandbox, f"/trades/{unpaid}/scan")
    assert _execute(client, AlipayTradeCloseRequest, {"out_trade_no": unpaid})["code"] == "10000"
    assert _execute(
        client,
        AlipayDataDataserviceBillDownloadurlQueryRequest,
        {"bill_type": "trade", "bill_date": time.strftime("%Y-%m-%d")},
    )["bill_download_url"]

    page = AlipayTradePagePayRequest()
    page_no = _no("off")
    page.biz_content = {
        "out_trade_no": page_no,
        "total_amount": "9.90",
        "subject": "page",
        "product_code": "FAST_INSTANT_TRADE_PAY",
    }
    assert httpx.get(client.page_execute(page, http_method="GET")).status_code == 303
    assert _control(sandbox, f"/trades/{page_no}/approve")["status"] == "TRADE_SUCCESS"

    waiting = _no("off")
    answer = _execute(
        client,
        AlipayTradePayRequest,
        {
            "out_trade_no": waiting,
            "scene": "bar_code",
            "auth_code": _payer_code(sandbox, password_required=True),
            "subject": "付款码",
            "total_amount": "3.30",
        },
    )
    assert answer["code"] == "10003"
    _control(sandbox, f"/trades/{waiting}/approve")
    assert _execute(client, AlipayTradeQueryRequest, {"out_trade_no": waiting})["trade_status"] == "TRADE_SUCCESS"

    oauth = httpx.post(f"{sandbox.base_url}/control/oauth-codes", json={"app_id": app["app_id"]}).json()
    token_request = AlipaySystemOauthTokenRequest()
    token_request.grant_type = "authorization_code"
    token_request.code = oauth["auth_code"]
    token = json.loads(client.execute(token_request))
    assert token["user_id"] == oauth["user_id"]
    created = _execute(
        client,
        AlipayTradeCreateRequest,
        {"out_trade_no": _no("off"), "total_amount": "2.00", "subject": "JSAPI", "buyer_id": token["user_id"]},
    )
    assert created["code"] == "10000" and created["trade_no"]


def _payer_code(sandbox: SandboxProcess, **extra: Any) -> str:
    response = httpx.post(f"{sandbox.base_url}/control/payer-codes", json=extra)
    response.raise_for_status()
    code: str = response.json()["auth_code"]
    assert code.isdigit() and 16 <= len(code) <= 24 and 25 <= int(code[:2]) <= 30
    return code


def test_python_alipay_sdk_barcode_pay_with_password_step_and_cancel(
    sandbox: SandboxProcess, receiver: CallbackReceiver
) -> None:
    """付款码: paid at once (10000); with the password demanded 10003 until the payer confirms; one left
    unconfirmed is cancelled at the merchant's deadline (closed, nothing charged)."""
    sdk = _sdk(sandbox, _app(sandbox), receiver.url("bar"))
    instant = _no("bar")
    paid = sdk.api_alipay_trade_pay(
        out_trade_no=instant, scene="bar_code", auth_code=_payer_code(sandbox), subject="便利店", total_amount=15.5
    )
    assert (paid["code"], paid["total_amount"], paid["buyer_pay_amount"]) == ("10000", "15.50", "15.50")
    assert (
        _trade_status_notification(receiver, "bar", sdk, instant, "TRADE_SUCCESS")["buyer_id"] == paid["buyer_user_id"]
    )

    waiting = _no("bar")
    answer = sdk.api_alipay_trade_pay(
        out_trade_no=waiting,
        scene="bar_code",
        subject="停车场",
        total_amount="8.00",
        auth_code=_payer_code(sandbox, password_required=True),
    )
    assert answer["code"] == "10003" and answer["trade_no"]
    assert sdk.api_alipay_trade_query(out_trade_no=waiting)["trade_status"] == "WAIT_BUYER_PAY"
    _control(sandbox, f"/trades/{waiting}/approve")  # the payer entered the password
    assert sdk.api_alipay_trade_query(out_trade_no=waiting)["trade_status"] == "TRADE_SUCCESS"

    abandoned = _no("bar")
    assert (
        sdk.api_alipay_trade_pay(
            out_trade_no=abandoned,
            scene="bar_code",
            subject="x",
            total_amount="1.00",
            auth_code=_payer_code(sandbox, password_required=True),
        )["code"]
        == "10003"
    )
    assert sdk.api_alipay_trade_cancel(out_trade_no=abandoned)["action"] == "close"
    assert sdk.api_alipay_trade_query(out_trade_no=abandoned)["trade_status"] == "TRADE_CLOSED"

    refused = sdk.api_alipay_trade_pay(
        out_trade_no=_no("bar"), scene="bar_code", subject="x", total_amount="1.00", auth_code="281234567890123456"
    )  # well-formed, never shown by a payer
    assert (refused["code"], refused["sub_code"]) == ("40004", "ACQ.PAYMENT_AUTH_CODE_INVALID")
    poor = sdk.api_alipay_trade_pay(
        out_trade_no=_no("bar"),
        scene="bar_code",
        subject="x",
        total_amount="9.00",
        auth_code=_payer_code(sandbox, balance_minor=100),
    )
    assert poor["sub_code"] == "ACQ.BUYER_BALANCE_NOT_ENOUGH"


def test_python_alipay_sdk_oauth_then_jsapi_trade_create(sandbox: SandboxProcess, receiver: CallbackReceiver) -> None:
    app = _app(sandbox)
    sdk = _sdk(sandbox, app, receiver.url("jsapi"))
    code = httpx.post(f"{sandbox.base_url}/control/oauth-codes", json={"app_id": app["app_id"]}).json()
    token = sdk.server_api("alipay.system.oauth.token", grant_type="authorization_code", code=code["auth_code"])
    assert token["user_id"] == code["user_id"] and token["access_token"] and token["refresh_token"]
    with pytest.raises(Exception, match=r"isv\.code-invalid"):  # a code works once; the SDK raises on error_response
        sdk.server_api("alipay.system.oauth.token", grant_type="authorization_code", code=code["auth_code"])
    refreshed = sdk.server_api(
        "alipay.system.oauth.token", grant_type="refresh_token", refresh_token=token["refresh_token"]
    )
    assert refreshed["user_id"] == token["user_id"]

    out_trade_no = _no("js")
    created = sdk.api_alipay_trade_create(
        subject="小程序",
        out_trade_no=out_trade_no,
        total_amount="6.66",
        buyer_id=token["user_id"],
        product_code="JSAPI_PAY",
    )
    assert created["code"] == "10000" and created["trade_no"]
    _control(sandbox, f"/trades/{out_trade_no}/approve")  # my.tradePay in the mini-program
    notified = _trade_status_notification(receiver, "jsapi", sdk, out_trade_no, "TRADE_SUCCESS")
    assert notified["buyer_id"] == token["user_id"]


def test_python_alipay_sdk_transfers_in_certificate_mode(sandbox: SandboxProcess, receiver: CallbackReceiver) -> None:
    app = _app(sandbox, cert_mode=True)
    sdk = _cert_sdk(sandbox, app, receiver.url("cert"))
    httpx.put(
        f"{sandbox.base_url}/control/apps/{app['app_id']}/balance", json={"available_minor": 100_000}
    ).raise_for_status()

    out_biz_no = _no("tr")
    sent = sdk.api_alipay_fund_trans_uni_transfer(
        out_biz_no=out_biz_no,
        identity_type="ALIPAY_LOGON_ID",
        identity="payee@example.com",
        trans_amount="200.00",
        name="张三",
        order_title="提现",
    )
    assert (sent["code"], sent["status"], sent["out_biz_no"]) == ("10000", "SUCCESS", out_biz_no)
    again = sdk.api_alipay_fund_trans_uni_transfer(
        out_biz_no=out_biz_no,
        identity_type="ALIPAY_LOGON_ID",
        identity="payee@example.com",
        trans_amount="200.00",
        name="张三",
        order_title="提现",
    )
    assert again["order_id"] == sent["order_id"]  # out_biz_no is the idempotency key
    queried = sdk.server_api(
        "alipay.fund.trans.common.query",
        {"out_biz_no": out_biz_no, "product_code": "TRANS_ACCOUNT_NO_PWD", "biz_scene": "DIRECT_TRANSFER"},
    )
    assert (queried["status"], queried["trans_amount"]) == ("SUCCESS", "200.00")
    balance = sdk.server_api(
        "alipay.fund.account.query", {"alipay_user_id": app["seller_id"], "account_type": "ACCTRANS_ACCOUNT"}
    )
    assert balance["available_amount"] == "800.00"

    too_much = sdk.api_alipay_fund_trans_uni_transfer(
        out_biz_no=_no("tr"), identity_type="ALIPAY_USER_ID", identity="2088102177846880", trans_amount="800.01"
    )
    assert too_much["sub_code"] == "PAYER_BALANCE_NOT_ENOUGH"
    nameless = sdk.api_alipay_fund_trans_uni_transfer(
        out_biz_no=_no("tr"), identity_type="ALIPAY_LOGON_ID", identity="payee@example.com", trans_amount="1.00"
    )
    assert nameless["sub_code"] == "PAYEE_USER_INFO_ERROR"

    public_key_app = _app(sandbox)
    refused = _sdk(sandbox, public_key_app, receiver.url("cert")).server_api(
        "alipay.fund.trans.uni.transfer",
        {
            "out_biz_no": _no("tr"),
            "trans_amount": "1.00",
            "product_code": "TRANS_ACCOUNT_NO_PWD",
            "biz_scene": "DIRECT_TRANSFER",
            "payee_info": {"identity": "2088102177846880", "identity_type": "ALIPAY_USER_ID"},
        },
    )
    assert (refused["code"], refused["sub_code"]) == ("40006", "isv.insufficient-isv-permissions")


def test_python_alipay_sdk_royalty_relations_and_settlement(
    sandbox: SandboxProcess, receiver: CallbackReceiver
) -> None:
    sdk = _sdk(sandbox, _app(sandbox), receiver.url("royalty"))
    receivers = [
        {"type": "userId", "account": "2088101126708402", "name": "门店A", "memo": "分账给门店"},
        {"type": "loginName", "account": "shop-b@example.com", "name": "门店B"},
    ]
    assert (
        sdk.server_api("alipay.trade.royalty.relation.bind", {"out_request_no": _no("b"), "receiver_list": receivers})[
            "code"
        ]
        == "10000"
    )
    listed = sdk.server_api(
        "alipay.trade.royalty.relation.batchquery", {"out_request_no": _no("q"), "page_num": 1, "page_size": 1}
    )
    assert (listed["total_record_num"], listed["total_page_num"], len(listed["receiver_list"])) == (2, 2, 1)

    out_trade_no = _no("rt")
    sdk.api_alipay_trade_precreate(
        subject="分账", out_trade_no=out_trade_no, total_amount="100.00", extend_params={"royalty_freeze": "true"}
    )
    trade_no = _control(sandbox, f"/trades/{out_trade_no}/approve")["trade_no"]
    settled = sdk.api_alipay_trade_order_settle(
        out_request_no=_no("s"),
        trade_no=trade_no,
        royalty_parameters=[
            {
                "royalty_type": "transfer",
                "trans_in_type": "userId",
                "trans_in": "2088101126708402",
                "amount": 10.5,
                "desc": "门店分成",
            }
        ],
    )  # a JSON-number amount, taken exactly
    assert settled["code"] == "10000" and settled["settle_no"]

    assert (
        sdk.server_api(
            "alipay.trade.royalty.relation.unbind", {"out_request_no": _no("u"), "receiver_list": receivers[:1]}
        )["code"]
        == "10000"
    )
    refused = sdk.api_alipay_trade_order_settle(
        out_request_no=_no("s"),
        trade_no=trade_no,
        royalty_parameters=[{"trans_in_type": "userId", "trans_in": "2088101126708402", "amount": "1.00"}],
    )
    assert refused["sub_code"] == "ACQ.TRANS_IN_NOT_BIND"


def _message(receiver: CallbackReceiver, name: str, sdk: Any, msg_method: str) -> dict[str, Any]:
    """The next open-platform message of that method, its signature checked by python-alipay-sdk."""
    for _ in range(10):
        _headers, body = receiver.next(name)
        data = _verify_notification(sdk, body)
        if data["msg_method"] == msg_method:
            content: dict[str, Any] = json.loads(data["biz_content"])
            return content
    raise AssertionError(f"no {msg_method} message")


def test_merchant_vouchers_created_sent_used_in_a_trade_and_alipay_funded_voucher(
    sandbox: SandboxProcess, receiver: CallbackReceiver, official_transport: None
) -> None:
    """商家券 2.0 through the official SDK's ordervoucher requests: create (the `created` message follows),
    send (idempotent by out_biz_no; per-user limit; quantity; append), a voucher used in a paid trade:
    voucher_detail_list in the query (with query_options) and the notification, merchant-funded,
    buyer_pay_amount and receipt_amount less the voucher, `used` message, inventory counts; stop. An
    Alipay-funded voucher shows as other_contribute and the merchant receives the whole amount."""
    app = _app(sandbox)
    client, sdk = _official(sandbox, app), _sdk(sandbox, app, receiver.url("vouchers-trade"))
    httpx.post(
        f"{sandbox.base_url}/control/apps/{app['app_id']}/message-gateway", json={"url": receiver.url("vouchers")}
    ).raise_for_status()
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone(timedelta(hours=8)))
    created = _execute(
        client,
        AlipayMarketingActivityOrdervoucherCreateRequest,
        {
            "out_biz_no": _no("act"),
            "activity_name": "满100减10",
            "code_mode": "MERCHANT_API",
            "voucher_send_mode_info": {
                "voucher_send_mode": "REQUEST",
                "voucher_send_rule_info": {"quantity": 2, "quantity_limit_per_user": 1},
            },
            "voucher_deduct_info": {
                "voucher_type": "FIX_VOUCHER",
                "fix_voucher_info": {"amount": "10.00", "floor_amount": "100.00"},
            },
            "voucher_use_rule_info": {
                "voucher_use_time_info": {
                    "period_type": "ABSOLUTE",
                    "absolute_period_info": {
                        "valid_begin_time": (now - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S"),
                        "valid_end_time": (now + timedelta(days=7)).strftime("%Y-%m-%d %H:%M:%S"),
                    },
                }
            },
        },
    )
    activity_id = created["activity_id"]
    assert (
        _message(receiver, "vouchers", sdk, "alipay.marketing.activity.message.created")["activity_id"] == activity_id
    )

    def send(buyer: str, out_biz_no: str | None = None) -> dict[str, Any]:
        biz = {"activity_id": activity_id, "out_biz_no": out_biz_no or _no("snd"), "user_id": buyer}
        return _execute(client, AlipayMarketingActivityOrdervoucherSendRequest, biz)

    buyer, other, third = "2088102146225135", "2088102146225136", "2088102146225137"
    request_no = _no("snd")
    code = send(buyer, request_no)["voucher_code"]
    assert send(buyer, request_no)["voucher_code"] == code
    assert send(buyer)["sub_code"] == "USER_RECEIVE_LIMIT"
    send(other)
    assert send(third)["sub_code"] == "INVENTORY_NOT_ENOUGH"
    _execute(
        client,
        AlipayMarketingActivityOrdervoucherAppendRequest,
        {"activity_id": activity_id, "out_biz_no": _no("app"), "voucher_quantity": 3},
    )
    send(third)

    out_trade_no = _no("vch")
    assert (
        sdk.api_alipay_trade_precreate(out_trade_no=out_trade_no, total_amount="120.00", subject="券")["code"]
        == "10000"
    )
    below = _no("vch")
    sdk.api_alipay_trade_precreate(out_trade_no=below, total_amount="99.00", subject="below the floor")
    refused = httpx.post(f"{sandbox.base_url}/control/trades/{below}/approve", params={"voucher_code": code})
    assert refused.status_code == 409 and refused.json()["detail"]["sub_code"] == "VOUCHER_NOT_APPLICABLE"
    _control(sandbox, f"/trades/{out_trade_no}/approve?voucher_code={code}")
    queried = _execute(
        client, AlipayTradeQueryRequest, {"out_trade_no": out_trade_no, "query_options": ["voucher_detail_list"]}
    )
    assert (queried["total_amount"], queried["buyer_pay_amount"], queried["receipt_amount"]) == (
        "120.00",
        "110.00",
        "110.00",
    )
    [detail] = queried["voucher_detail_list"]
    assert (detail["amount"], detail["merchant_contribute"], detail["other_contribute"], detail["template_id"]) == (
        "10.00",
        "10.00",
        "0.00",
        activity_id,
    )
    assert "voucher_detail_list" not in _execute(client, AlipayTradeQueryRequest, {"out_trade_no": out_trade_no})
    notified = _trade_status_notification(receiver, "vouchers-trade", sdk, out_trade_no, "TRADE_SUCCESS")
    assert json.loads(notified["voucher_detail_list"]) == [detail] and notified["buyer_pay_amount"] == "110.00"
    used = _message(receiver, "vouchers", sdk, "alipay.marketing.activity.message.used")
    assert used["voucher_code"] == code and used["trade_no"] == queried["trade_no"]
    inventory = _execute(client, AlipayMarketingActivityOrdervoucherQueryRequest, {"activity_id": activity_id})
    assert inventory["voucher_inventory_info"] == {"send_count": 3, "use_count": 1}

    again = _no("vch")
    sdk.api_alipay_trade_precreate(out_trade_no=again, total_amount="120.00", subject="the same voucher")
    twice = httpx.post(f"{sandbox.base_url}/control/trades/{again}/approve", params={"voucher_code": code})
    assert twice.status_code == 409 and twice.json()["detail"]["sub_code"] == "VOUCHER_STATUS_ERROR"

    _execute(
        client, AlipayMarketingActivityOrdervoucherStopRequest, {"activity_id": activity_id, "out_biz_no": _no("stp")}
    )
    assert (
        _message(receiver, "vouchers", sdk, "alipay.marketing.activity.message.stopped")["activity_status"] == "STOPPED"
    )
    assert send("2088102146225138")["sub_code"] == "ACTIVITY_STATUS_ERROR"

    gift = httpx.post(
        f"{sandbox.base_url}/control/vouchers/alipay",
        json={"app_id": app["app_id"], "buyer_id": buyer, "amount_minor": 500},
    ).json()["voucher_code"]
    funded = _no("vch")
    sdk.api_alipay_trade_precreate(out_trade_no=funded, total_amount="50.00", subject="Alipay's red packet")
    _control(sandbox, f"/trades/{funded}/approve?voucher_code={gift}")
    paid = _execute(client, AlipayTradeQueryRequest, {"out_trade_no": funded, "query_options": ["voucher_detail_list"]})
    [channel] = paid["voucher_detail_list"]
    assert (channel["type"], channel["other_contribute"], channel["merchant_contribute"]) == (
        "ALIPAY_FIX_VOUCHER",
        "5.00",
        "0.00",
    )
    assert (paid["buyer_pay_amount"], paid["receipt_amount"]) == ("45.00", "50.00")

    # the trade bill prints what Alipay settles: 商家实收 = 订单金额 − 商家优惠 (the 商家券), Alipay's own voucher
    # under 支付宝优惠 with 商家实收 the whole amount; a partial refund gives back its share of the 商家券
    assert (
        sdk.api_alipay_trade_refund(refund_amount="60.00", out_trade_no=out_trade_no, out_request_no="vr1")["code"]
        == "10000"
    )
    rows = _detail_rows(sdk)
    columns = ("订单金额(元)", "商家实收(元)", "支付宝优惠(元)", "商家优惠(元)", "券核销金额(元)", "券名称")
    shown = {(row["商户订单号"], row["业务类型"]): tuple(row[c] for c in columns) for row in rows}
    assert shown[(out_trade_no, "交易")] == ("120.00", "110.00", "0.00", "10.00", "10.00", "满100减10")
    assert shown[(out_trade_no, "退款")] == ("-60.00", "-55.00", "0.00", "-5.00", "-5.00", "满100减10")
    assert shown[(funded, "交易")][:5] == ("50.00", "50.00", "5.00", "0.00", "5.00")


def _detail_rows(sdk: Any) -> list[dict[str, str]]:
    """Today's 业务明细 rows by header (half-width brackets, TABs stripped), downloaded as a merchant does."""
    import csv
    import io
    import zipfile

    node = sdk.server_api(
        "alipay.data.dataservice.bill.downloadurl.query", {"bill_type": "trade", "bill_date": time.strftime("%Y-%m-%d")}
    )
    with zipfile.ZipFile(io.BytesIO(httpx.get(node["bill_download_url"]).content)) as archive:
        member = next(
            i for i in archive.infolist() if i.filename.encode("cp437").decode("gbk").endswith("_业务明细.csv")
        )
        text = archive.read(member).decode("gbk")
    data = [line for line in text.split("\r\n") if line and not line.startswith("#")]
    header, *cells = list(csv.reader(data))
    names = [name.replace("（", "(").replace("）", ")") for name in header]
    return [dict(zip(names, (cell.strip() for cell in row), strict=True)) for row in cells]
