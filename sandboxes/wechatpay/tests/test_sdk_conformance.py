"""The public `wechatpayv3` SDK (PyPI, pinned in the dev extras) against the sandbox, unmodified.

The only change to the SDK is its gateway (`_core._gate_way`, the base URL) and the keys the
sandbox issued. In platform-certificate mode the SDK downloads `/v3/certificates` while it is being
constructed, before a base URL can be set; there its own bootstrap (`Core._init_certificates`) is
deferred until the gateway points at the sandbox, then run as is. Every reply is verified by the
SDK's own code (it refuses a 2xx without `Wechatpay-Signature-Type`, a bad signature or an unknown
serial), and every callback goes through the SDK's own `callback()` (signature + AES-GCM). So a
sandbox change that breaks a merchant using this SDK fails here.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.core import Core

from sandboxes.common.testing import CallbackReceiver, SandboxProcess

PORT_ENV = "JUHE_SANDBOX_WECHATPAY_PORT"
APPID = "wxd678efh567hg6787"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    data_dir: Path = tmp_path_factory.mktemp("wechatpay-sdk")
    env = {
        "JUHE_DATA_DIR": str(data_dir),
        "JUHE_SANDBOX_NOTIFY_SCALE": "0.001",
        "JUHE_SANDBOX_WECHATPAY_REFUND_AUTO_SECONDS": "0.3",
    }
    with SandboxProcess("sandboxes.wechatpay", port_env=PORT_ENV, env=env) as process:
        yield process


@pytest.fixture(scope="module")
def receiver() -> Iterator[CallbackReceiver]:
    server = CallbackReceiver(reply_status=204)
    yield server
    server.close()


def _register(sandbox: SandboxProcess, **extra: Any) -> dict[str, Any]:
    mchid = "19" + "".join(secrets.choice("0123456789") for _ in range(8))
    response = httpx.post(
        f"{sandbox.base_url}/control/merchants",
        json={"mchid": mchid, "appid": APPID, "generate_key_pair": True, **extra},
    )
    response.raise_for_status()
    registration: dict[str, Any] = response.json()
    return registration


def _sdk(
    sandbox: SandboxProcess,
    registration: dict[str, Any],
    notify_url: str,
    *,
    certificate_mode: bool = False,
    partner: bool = False,
) -> Any:
    """The SDK as a merchant constructs it; only the gateway is the sandbox's."""
    keys: dict[str, Any] = (
        {}
        if certificate_mode
        else {
            "public_key": registration["platform_public_key_pem"],
            "public_key_id": registration["platform_public_key_id"],
        }
    )
    with mock.patch.object(Core, "_init_certificates", lambda self: None):
        client = WeChatPay(
            wechatpay_type=WeChatPayType.NATIVE,
            mchid=registration["mchid"],
            private_key=registration["merchant_private_key_pem"],
            cert_serial_no=registration["merchant_cert_serial"],
            appid=APPID,
            apiv3_key=registration["apiv3_key"],
            notify_url=notify_url,
            partner_mode=partner,
            **keys,
        )
    client._core._gate_way = sandbox.base_url
    if certificate_mode:
        Core._init_certificates(client._core)  # the SDK's own bootstrap: GET /v3/certificates, decrypt, keep
    return client


def _no(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(8)}"


def _approve(sandbox: SandboxProcess, out_trade_no: str, scope: str) -> None:
    httpx.post(
        f"{sandbox.base_url}/control/orders/{out_trade_no}/approve", params={"mchid": scope}, json={}
    ).raise_for_status()


def _ok(result: tuple[int, Any], status: int = 200) -> dict[str, Any]:
    code, message = result
    assert code == status, message
    return json.loads(message) if status != 204 else {}


def test_orders_refunds_bills_and_callbacks_in_public_key_mode(
    sandbox: SandboxProcess, receiver: CallbackReceiver
) -> None:
    registration = _register(sandbox)
    wx = _sdk(sandbox, registration, receiver.url("pay"))
    mchid = registration["mchid"]

    paid = _no("sdk")
    assert _ok(wx.pay(description="停车费", out_trade_no=paid, amount={"total": 888}))["code_url"].startswith(
        "weixin://wxpay/bizpayurl?pr="
    )
    assert "prepay_id" in _ok(
        wx.pay(
            description="JSAPI",
            out_trade_no=_no("js"),
            amount={"total": 1},
            payer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            pay_type=WeChatPayType.JSAPI,
        )
    )
    assert "prepay_id" in _ok(
        wx.pay(description="APP", out_trade_no=_no("app"), amount={"total": 1}, pay_type=WeChatPayType.APP)
    )
    assert "h5_url" in _ok(
        wx.pay(
            description="H5",
            out_trade_no=_no("h5"),
            amount={"total": 1},
            scene_info={"payer_client_ip": "14.23.150.211", "h5_info": {"type": "Wap"}},
            pay_type=WeChatPayType.H5,
        )
    )
    assert _ok(wx.query(out_trade_no=paid))["trade_state"] == "NOTPAY"

    _approve(sandbox, paid, mchid)
    headers, body = receiver.next("pay")
    callback = wx.callback(headers, body)  # the SDK's verify + decrypt
    assert callback is not None and callback["event_type"] == "TRANSACTION.SUCCESS"
    transaction = callback["resource"]
    assert (transaction["out_trade_no"], transaction["trade_state"], transaction["amount"]["total"]) == (
        paid,
        "SUCCESS",
        888,
    )
    by_id = _ok(wx.query(transaction_id=transaction["transaction_id"]))
    assert by_id["trade_state"] == "SUCCESS" and by_id["payer"]["openid"] == transaction["payer"]["openid"]

    refund = _ok(
        wx.refund(
            out_refund_no=_no("rf"),
            amount={"refund": 300, "total": 888, "currency": "CNY"},
            out_trade_no=paid,
            notify_url=receiver.url("refund"),
        )
    )
    assert refund["status"] == "PROCESSING" and refund["amount"]["refund"] == 300
    headers, body = receiver.next("refund")
    refunded = wx.callback(headers, body)
    assert refunded is not None and refunded["event_type"] == "REFUND.SUCCESS"
    assert refunded["resource"]["refund_status"] == "SUCCESS"
    assert _ok(wx.query_refund(out_refund_no=refund["out_refund_no"]))["status"] == "SUCCESS"

    closed = _no("cl")
    _ok(wx.pay(description="to close", out_trade_no=closed, amount={"total": 5}))
    _ok(wx.close(out_trade_no=closed), 204)  # signed empty 204, verified by the SDK
    assert _ok(wx.query(out_trade_no=closed))["trade_state"] == "CLOSED"

    from datetime import datetime, timedelta, timezone

    today = datetime.now(timezone(timedelta(hours=8))).date().isoformat()
    bill = _ok(wx.trade_bill(bill_date=today))
    code, content = wx.download_bill(bill["download_url"])  # unsigned reply: the SDK skips verification
    assert code == 200
    text = gzip.decompress(content)
    assert hashlib.sha1(text).hexdigest() == bill["hash_value"] and paid.encode() in text


def test_refund_of_unknown_or_unpaid_order_is_resource_not_exists(
    sandbox: SandboxProcess, receiver: CallbackReceiver
) -> None:
    wx = _sdk(sandbox, _register(sandbox), receiver.url("unused"))
    unpaid = _no("up")
    _ok(wx.pay(description="unpaid", out_trade_no=unpaid, amount={"total": 100}))
    for out_trade_no in (unpaid, _no("nx")):
        code, message = wx.refund(
            out_refund_no=_no("rf"), amount={"refund": 1, "total": 100, "currency": "CNY"}, out_trade_no=out_trade_no
        )
        assert (code, json.loads(message)["code"]) == (404, "RESOURCE_NOT_EXISTS")


def test_partner_mode(sandbox: SandboxProcess, receiver: CallbackReceiver) -> None:
    sub_mchid = "1900000109"
    registration = _register(sandbox, sub_merchants=[{"sub_mchid": sub_mchid}])
    wx = _sdk(sandbox, registration, receiver.url("partner"), partner=True)
    out_trade_no = _no("sp")
    _ok(wx.pay(description="partner", out_trade_no=out_trade_no, amount={"total": 200}, sub_mchid=sub_mchid))
    _approve(sandbox, out_trade_no, f"{registration['mchid']}/{sub_mchid}")
    callback = wx.callback(*receiver.next("partner"))
    assert callback is not None and callback["resource"]["sub_mchid"] == sub_mchid
    assert _ok(wx.query(out_trade_no=out_trade_no, sub_mchid=sub_mchid))["trade_state"] == "SUCCESS"
    refund = _ok(
        wx.refund(
            out_refund_no=_no("rf"),
            amount={"refund": 200, "total": 200, "currency": "CNY"},
            out_trade_no=out_trade_no,
            sub_mchid=sub_mchid,
        )
    )
    assert (
        _ok(wx.query_refund(out_refund_no=refund["out_refund_no"], sub_mchid=sub_mchid))["refund_id"]
        == refund["refund_id"]
    )
    unpaid = _no("sp")
    _ok(wx.pay(description="partner close", out_trade_no=unpaid, amount={"total": 200}, sub_mchid=sub_mchid))
    _ok(wx.close(out_trade_no=unpaid, sub_mchid=sub_mchid), 204)


def test_platform_certificate_mode_with_rotation(sandbox: SandboxProcess, receiver: CallbackReceiver) -> None:
    registration = _register(sandbox, platform_verification="certificate")
    wx = _sdk(sandbox, registration, receiver.url("cert"), certificate_mode=True)
    serials = {hex(c.serial_number)[2:].upper() for c in wx._core._certificates}
    assert serials == {c["serial_no"] for c in registration["platform_certificates"]}

    first = _no("ct")
    _ok(wx.pay(description="cert mode", out_trade_no=first, amount={"total": 10}))
    _approve(sandbox, first, registration["mchid"])
    headers, body = receiver.next("cert")
    assert headers["Wechatpay-Serial"] in serials
    assert wx.callback(headers, body) is not None

    rotated = httpx.post(f"{sandbox.base_url}/control/platform-certificates/rotate").json()["serial_no"]
    second = _no("ct")
    _ok(wx.pay(description="after rotation", out_trade_no=second, amount={"total": 10}))  # unknown serial:
    assert rotated in {hex(c.serial_number)[2:].upper() for c in wx._core._certificates}  # the SDK re-downloaded
    _approve(sandbox, second, registration["mchid"])
    headers, body = receiver.next("cert")
    assert headers["Wechatpay-Serial"] == rotated and wx.callback(headers, body) is not None


def test_profit_sharing(sandbox: SandboxProcess, receiver: CallbackReceiver) -> None:
    registration = _register(sandbox)
    wx = _sdk(sandbox, registration, receiver.url("ps"))
    out_trade_no = _no("ps")
    _ok(
        wx.pay(
            description="split", out_trade_no=out_trade_no, amount={"total": 1000}, settle_info={"profit_sharing": True}
        )
    )
    _approve(sandbox, out_trade_no, registration["mchid"])
    transaction_id = wx.callback(*receiver.next("ps"))["resource"]["transaction_id"]
    _ok(
        wx.profitsharing_add_receiver(
            account_type="MERCHANT_ID", account="86693852", relation_type="STORE", name="示例商户全称"
        )
    )  # name RSA-OAEP encrypted by the SDK
    order = _ok(
        wx.profitsharing_order(
            transaction_id=transaction_id,
            out_order_no=_no("P"),
            unfreeze_unsplit=False,
            receivers=[{"type": "MERCHANT_ID", "account": "86693852", "amount": 100, "description": "分给门店"}],
        )
    )
    assert order["receivers"][0]["result"] in ("PENDING", "SUCCESS")
    queried = _ok(wx.profitsharing_order_query(transaction_id=transaction_id, out_order_no=order["out_order_no"]))
    assert queried["order_id"] == order["order_id"]
    assert _ok(wx.profitsharing_amount_query(transaction_id=transaction_id))["unsplit_amount"] == 900

    returned = _ok(
        wx.profitsharing_return(
            out_return_no=_no("R"),
            return_mchid="86693852",
            amount=40,
            description="退回",
            out_order_no=order["out_order_no"],
        )
    )
    assert (returned["result"], returned["amount"]) == ("SUCCESS", 40)
    assert (
        _ok(wx.profitsharing_return_query(out_order_no=order["out_order_no"], out_return_no=returned["out_return_no"]))[
            "return_id"
        ]
        == returned["return_id"]
    )
    code, message = wx.profitsharing_return(
        out_return_no=_no("R"),
        return_mchid="86693852",
        amount=61,
        description="too much",
        out_order_no=order["out_order_no"],
    )
    assert (code, json.loads(message)["code"]) == (400, "INVALID_REQUEST")  # only 60 of the 100 are left

    unfrozen = _ok(
        wx.profitsharing_unfreeze(transaction_id=transaction_id, out_order_no=_no("U"), description="解冻全部剩余资金")
    )
    assert unfrozen["receivers"][0]["amount"] == 900 and unfrozen["state"] == "FINISHED"
    assert _ok(wx.profitsharing_amount_query(transaction_id=transaction_id))["unsplit_amount"] == 0
    assert _ok(wx.profitsharing_delete_receiver(account_type="MERCHANT_ID", account="86693852")) == {
        "type": "MERCHANT_ID",
        "account": "86693852",
    }

    from datetime import datetime, timedelta, timezone

    today = datetime.now(timezone(timedelta(hours=8))).date().isoformat()
    bill = _ok(wx.profitsharing_bill(bill_date=today))
    code, content = wx.download_bill(bill["download_url"])
    text = gzip.decompress(content)
    assert code == 200 and hashlib.sha1(text).hexdigest() == bill["hash_value"]
    assert order["out_order_no"].encode() in text and returned["out_return_no"].encode() in text


def test_profit_sharing_merchant_config_in_partner_mode(sandbox: SandboxProcess, receiver: CallbackReceiver) -> None:
    registration = _register(sandbox, sub_merchants=[{"sub_mchid": "1900000222"}])
    wx = _sdk(sandbox, registration, receiver.url("unused"), partner=True)
    assert _ok(wx.profitsharing_config_query(sub_mchid="1900000222")) == {"sub_mchid": "1900000222", "max_ratio": 3000}
    code, message = wx.profitsharing_config_query(sub_mchid="1900009999")
    assert (code, json.loads(message)["code"]) == (403, "NO_AUTH")


def _payer_code(sandbox: SandboxProcess, **extra: Any) -> str:
    response = httpx.post(f"{sandbox.base_url}/control/payer-codes", json=extra)
    response.raise_for_status()
    code: str = response.json()["auth_code"]
    assert len(code) == 18 and code.isdigit() and 10 <= int(code[:2]) <= 15
    return code


def test_codepay_password_step_reverse_and_fundflow_bill(sandbox: SandboxProcess, receiver: CallbackReceiver) -> None:
    """付款码: charged at once (200, MICROPAY); a code demanding the password answers 202 USERPAYING
    until the payer confirms; one left unconfirmed is reversed (signed 204) and ends REVOKED."""
    registration = _register(sandbox)
    wx = _sdk(sandbox, registration, receiver.url("unused"))
    scene = {"device_id": "POS-1", "store_info": {"out_id": "canteen-1"}}

    instant = _no("cp")
    paid = _ok(
        wx.pay(
            description="食堂",
            out_trade_no=instant,
            amount={"total": 1500},
            pay_type=WeChatPayType.CODEPAY,
            payer={"auth_code": _payer_code(sandbox)},
            scene_info=scene,
        )
    )
    assert (paid["trade_state"], paid["trade_type"], paid["amount"]["total"]) == ("SUCCESS", "MICROPAY", 1500)

    with_password = _no("cp")
    code, message = wx.pay(
        description="停车场",
        out_trade_no=with_password,
        amount={"total": 800},
        pay_type=WeChatPayType.CODEPAY,
        payer={"auth_code": _payer_code(sandbox, password_required=True)},
        scene_info=scene,
    )
    assert (code, json.loads(message)["code"]) == (202, "USERPAYING")  # signed 202, verified by the SDK
    assert _ok(wx.query(out_trade_no=with_password))["trade_state"] == "USERPAYING"
    _approve(sandbox, with_password, registration["mchid"])  # the payer typed the password
    assert _ok(wx.query(out_trade_no=with_password))["trade_state"] == "SUCCESS"

    abandoned = _no("cp")
    code, _ = wx.pay(
        description="无人确认",
        out_trade_no=abandoned,
        amount={"total": 100},
        pay_type=WeChatPayType.CODEPAY,
        payer={"auth_code": _payer_code(sandbox, password_required=True)},
    )
    assert code == 202
    _ok(wx.codepay_reverse(out_trade_no=abandoned), 204)
    assert _ok(wx.query(out_trade_no=abandoned))["trade_state"] == "REVOKED"

    used = _payer_code(sandbox)
    _ok(
        wx.pay(
            description="once",
            out_trade_no=_no("cp"),
            amount={"total": 1},
            pay_type=WeChatPayType.CODEPAY,
            payer={"auth_code": used},
        )
    )
    code, message = wx.pay(
        description="twice",
        out_trade_no=_no("cp"),
        amount={"total": 1},
        pay_type=WeChatPayType.CODEPAY,
        payer={"auth_code": used},
    )
    assert (code, json.loads(message)["code"]) == (400, "AUTH_CODE_INVALID")  # a code pays once

    from datetime import datetime, timedelta, timezone

    today = datetime.now(timezone(timedelta(hours=8))).date().isoformat()
    bill = _ok(wx.fundflow_bill(bill_date=today))
    code, content = wx.download_bill(bill["download_url"])
    text = gzip.decompress(content)
    assert code == 200 and hashlib.sha1(text).hexdigest() == bill["hash_value"]
    lines = text.decode("utf-8").split("\r\n")
    assert lines[0].startswith("记账时间,微信支付业务单号") and "`交易,`交易,`收入,`15.00" in text.decode("utf-8")


def test_merchant_transfer_bills_user_confirmation_cancel_and_expiry(
    sandbox: SandboxProcess, receiver: CallbackReceiver
) -> None:
    """商家转账: WAIT_USER_CONFIRM + package_info; confirmed by the user → SUCCESS + callback; cancelled by
    the merchant; left unconfirmed until the window ends → CANCELLED (OVERDUE_CLOSE) + callback."""
    wx = _sdk(sandbox, _register(sandbox), receiver.url("transfer"))
    openid = "o-MYE42l80oelYMDE34nYD456Xoy"

    report = [{"info_type": "岗位类型", "info_content": "骑手"}, {"info_type": "报酬说明", "info_content": "周结"}]

    def transfer(amount: int, **extra: Any) -> dict[str, Any]:
        return _ok(
            wx.mch_transfer_bills(
                out_bill_no=_no("TB"),
                transfer_scene_id="1005",
                openid=openid,
                transfer_amount=amount,
                transfer_remark="提现到零钱",
                transfer_scene_report_infos=report,
                **extra,
            )
        )

    confirmed = transfer(5000, user_name="张三")  # the SDK RSA-encrypts user_name and names the key
    assert confirmed["state"] == "WAIT_USER_CONFIRM" and confirmed["package_info"]
    httpx.post(f"{sandbox.base_url}/control/transfer-bills/{confirmed['out_bill_no']}/confirm").raise_for_status()
    callback = wx.callback(*receiver.next("transfer"))
    assert (callback["event_type"], callback["resource"]["state"]) == ("MCHTRANSFER.BILL.FINISHED", "SUCCESS")
    queried = _ok(wx.mch_transfer_bills_query(out_bill_no=confirmed["out_bill_no"]))
    assert (queried["state"], queried["transfer_amount"]) == ("SUCCESS", 5000)
    assert (
        _ok(wx.mch_transfer_bills_query(transfer_bill_no=confirmed["transfer_bill_no"]))["out_bill_no"]
        == confirmed["out_bill_no"]
    )
    code, message = wx.mch_transfer_bills_cancel(out_bill_no=confirmed["out_bill_no"])
    assert (code, json.loads(message)["code"]) == (400, "INVALID_REQUEST")  # paid out: too late to cancel

    cancelled = transfer(100)
    assert _ok(wx.mch_transfer_bills_cancel(out_bill_no=cancelled["out_bill_no"]))["state"] == "CANCELLED"
    assert wx.callback(*receiver.next("transfer"))["resource"]["state"] == "CANCELLED"

    unconfirmed = transfer(100)
    httpx.post(f"{sandbox.base_url}/control/transfer-bills/{unconfirmed['out_bill_no']}/expire").raise_for_status()
    expired = wx.callback(*receiver.next("transfer"))["resource"]
    assert (expired["state"], expired["fail_reason"]) == ("CANCELLED", "OVERDUE_CLOSE")


def test_jsapi_payment_with_the_openid_from_oauth(sandbox: SandboxProcess, receiver: CallbackReceiver) -> None:
    """The payer's openid comes from WeChat's OAuth (web page: /sns/oauth2/access_token; mini-program:
    /sns/jscode2session), then a JSAPI order for that openid is paid and called back with it."""
    registration = _register(sandbox)
    secret = registration["app_secrets"][APPID]
    wx = _sdk(sandbox, registration, receiver.url("jsapi"))

    granted = httpx.post(f"{sandbox.base_url}/control/oauth-codes", json={"appid": APPID}).json()
    query = {"appid": APPID, "secret": secret, "code": granted["code"], "grant_type": "authorization_code"}
    token = httpx.get(f"{sandbox.base_url}/sns/oauth2/access_token", params=query).json()
    assert token["openid"] == granted["openid"] and token["access_token"]
    again = httpx.get(f"{sandbox.base_url}/sns/oauth2/access_token", params=query).json()
    assert again["errcode"] == 40029  # a code is used once
    wrong_secret = httpx.get(f"{sandbox.base_url}/sns/oauth2/access_token", params={**query, "secret": "x"}).json()
    assert wrong_secret["errcode"] == 40125

    login = httpx.post(
        f"{sandbox.base_url}/control/oauth-codes", json={"appid": APPID, "openid": token["openid"]}
    ).json()
    session = httpx.get(
        f"{sandbox.base_url}/sns/jscode2session",
        params={"appid": APPID, "secret": secret, "js_code": login["code"], "grant_type": "authorization_code"},
    ).json()
    assert session["openid"] == token["openid"] and session["session_key"]

    out_trade_no = _no("js")
    prepay = _ok(
        wx.pay(
            description="小程序",
            out_trade_no=out_trade_no,
            amount={"total": 66},
            payer={"openid": token["openid"]},
            pay_type=WeChatPayType.MINIPROG,
        )
    )
    assert prepay["prepay_id"].startswith("wx")
    _approve(sandbox, out_trade_no, registration["mchid"])
    callback = wx.callback(*receiver.next("jsapi"))
    assert callback["resource"]["payer"]["openid"] == token["openid"]


@pytest.fixture(scope="module")
def manual_refunds_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """A sandbox whose refunds end only through the control API (no timer racing the test)."""
    env = {
        "JUHE_DATA_DIR": str(tmp_path_factory.mktemp("wechatpay-sdk-manual")),
        "JUHE_SANDBOX_NOTIFY_SCALE": "0.001",
        "JUHE_SANDBOX_WECHATPAY_REFUND_AUTO_SECONDS": "-1",
    }
    with SandboxProcess("sandboxes.wechatpay", port_env=PORT_ENV, env=env) as process:
        yield process


def test_abnormal_refund_applied_again_to_a_bank_card(
    manual_refunds_sandbox: SandboxProcess, receiver: CallbackReceiver
) -> None:
    """A refund ends ABNORMAL (REFUND.ABNORMAL callback); apply-abnormal-refund sends it to the payer's
    bank card (bank_account and real_name RSA-encrypted by the SDK): PROCESSING, then SUCCESS."""
    sandbox = manual_refunds_sandbox
    registration = _register(sandbox)
    wx = _sdk(sandbox, registration, receiver.url("abnormal"))
    out_trade_no = _no("ab")
    _ok(wx.pay(description="abnormal", out_trade_no=out_trade_no, amount={"total": 500}))
    _approve(sandbox, out_trade_no, registration["mchid"])
    assert wx.callback(*receiver.next("abnormal"))["event_type"] == "TRANSACTION.SUCCESS"
    refund = _ok(
        wx.refund(
            out_refund_no=_no("rf"), amount={"refund": 500, "total": 500, "currency": "CNY"}, out_trade_no=out_trade_no
        )
    )
    httpx.post(
        f"{sandbox.base_url}/control/refunds/{refund['out_refund_no']}/fail", json={"status": "ABNORMAL"}
    ).raise_for_status()
    assert wx.callback(*receiver.next("abnormal"))["event_type"] == "REFUND.ABNORMAL"
    applied = _ok(
        wx.abnormal_refund(
            refund_id=refund["refund_id"],
            out_refund_no=refund["out_refund_no"],
            type="USER_BANK_CARD",
            bank_type="ICBC_DEBIT",
            bank_account="6212260000000000000",
            real_name="张三",
        )
    )
    assert (applied["status"], applied["channel"]) == ("PROCESSING", "OTHER_BANKCARD")
    httpx.post(f"{sandbox.base_url}/control/refunds/{refund['out_refund_no']}/approve").raise_for_status()
    assert wx.callback(*receiver.next("abnormal"))["event_type"] == "REFUND.SUCCESS"
    code, message = wx.abnormal_refund(
        refund_id=refund["refund_id"], out_refund_no=refund["out_refund_no"], type="MERCHANT_BANK_CARD"
    )
    assert (code, json.loads(message)["code"]) == (400, "INVALID_REQUEST")  # no longer abnormal


def _sub_order(mchid: str, out_trade_no: str, total: int, **extra: Any) -> dict[str, Any]:
    return {
        "mchid": mchid,
        "attach": "深圳分店",
        "amount": {"total_amount": total, "currency": "CNY"},
        "out_trade_no": out_trade_no,
        "description": "合单商品",
        **extra,
    }


def _error(result: tuple[int, Any]) -> tuple[int, str]:
    code, message = result
    return code, json.loads(message)["code"]


def test_combined_payment_one_callback_refund_per_sub_order_bill_and_close(
    sandbox: SandboxProcess, receiver: CallbackReceiver
) -> None:
    """合单: two merchants' orders paid at once through the SDK's combine_pay / combine_query / combine_close;
    the one combined callback verified and decrypted by the SDK; each sub-order refunded by its own
    out_trade_no, listed in its merchant's trade bill; closing, expiry and the errors merchants meet."""
    initiator, other = _register(sandbox), _register(sandbox)  # both bound to APPID (the combine_appid)
    wx, wx_other = _sdk(sandbox, initiator, receiver.url("combine")), _sdk(sandbox, other, receiver.url("unused"))
    a, b, combined = _no("subA"), _no("subB"), _no("cmb")
    subs = [
        _sub_order(initiator["mchid"], a, 300, settle_info={"profit_sharing": False, "subsidy_amount": 0}),
        _sub_order(other["mchid"], b, 700),
    ]
    scene = {"device_id": "POS1:123", "payer_client_ip": "14.17.22.32"}
    created = _ok(wx.combine_pay(combine_out_trade_no=combined, sub_orders=subs, scene_info=scene))
    assert created["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert _ok(wx.combine_pay(combine_out_trade_no=combined, sub_orders=subs, scene_info=scene)) == created
    openid = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    for pay_type, extra, field in (
        (WeChatPayType.JSAPI, {"combine_payer_info": {"openid": openid}}, "prepay_id"),
        (WeChatPayType.APP, {}, "prepay_id"),
        (WeChatPayType.H5, {"scene_info": {"payer_client_ip": "14.23.150.211", "h5_info": {"type": "Wap"}}}, "h5_url"),
    ):
        others = [_sub_order(initiator["mchid"], _no("s"), 100), _sub_order(other["mchid"], _no("s"), 100)]
        assert field in _ok(
            wx.combine_pay(combine_out_trade_no=_no("cmb"), sub_orders=others, pay_type=pay_type, **extra)
        )
    pending = _ok(wx.combine_query(combine_out_trade_no=combined))
    assert (pending["combine_mchid"], pending["combine_appid"], pending["scene_info"]) == (
        initiator["mchid"],
        APPID,
        {"device_id": "POS1:123"},
    )
    assert [(s["out_trade_no"], s["trade_state"], s["amount"]["total_amount"]) for s in pending["sub_orders"]] == [
        (a, "NOTPAY", 300),
        (b, "NOTPAY", 700),
    ]

    httpx.post(
        f"{sandbox.base_url}/control/combine-orders/{combined}/approve",
        params={"mchid": initiator["mchid"]},
        json={"payer_openid": openid},
    ).raise_for_status()
    callback = wx.callback(*receiver.next("combine"))  # the SDK's signature check + AES-256-GCM decrypt
    assert callback is not None and callback["event_type"] == "TRANSACTION.SUCCESS"
    resource = callback["resource"]
    assert (resource["combine_out_trade_no"], resource["combine_payer_info"]) == (combined, {"openid": openid})
    assert [(s["mchid"], s["out_trade_no"], s["trade_state"], s["attach"]) for s in resource["sub_orders"]] == [
        (initiator["mchid"], a, "SUCCESS", "深圳分店"),
        (other["mchid"], b, "SUCCESS", "深圳分店"),
    ]
    assert all(
        s["transaction_id"] and s["amount"]["payer_amount"] == s["amount"]["total_amount"]
        for s in resource["sub_orders"]
    )
    assert _ok(wx.combine_query(combine_out_trade_no=combined)) == resource
    assert _ok(wx_other.query(out_trade_no=b))["trade_state"] == "SUCCESS"  # an ordinary order of its merchant

    # Each sub-order is refunded by its merchant, by its own out_trade_no, like any order.
    refund = _ok(
        wx.refund(
            out_refund_no=_no("rf"),
            amount={"refund": 300, "total": 300, "currency": "CNY"},
            out_trade_no=a,
            notify_url=receiver.url("combine-refund"),
        )
    )
    refunded = wx.callback(*receiver.next("combine-refund"))
    assert refunded is not None and refunded["resource"]["out_trade_no"] == a
    assert _ok(wx.query_refund(out_refund_no=refund["out_refund_no"]))["status"] == "SUCCESS"
    other_refund = _ok(
        wx_other.refund(
            out_refund_no=_no("rf"), out_trade_no=b, amount={"refund": 200, "total": 700, "currency": "CNY"}
        )
    )
    assert other_refund["amount"]["refund"] == 200
    from datetime import datetime, timedelta, timezone

    cst = timezone(timedelta(hours=8))
    today = datetime.now(cst).date().isoformat()
    for client, own, foreign in ((wx, a, b), (wx_other, b, a)):
        bill = _ok(client.trade_bill(bill_date=today))
        text = gzip.decompress(client.download_bill(bill["download_url"])[1])
        assert own.encode() in text and foreign.encode() not in text

    assert _error(wx.combine_pay(combine_out_trade_no=combined, sub_orders=subs, scene_info=scene)) == (
        400,
        "ORDERPAID",
    )
    assert _error(
        wx.combine_close(
            combine_out_trade_no=combined,
            sub_orders=[{"mchid": initiator["mchid"], "out_trade_no": a}, {"mchid": other["mchid"], "out_trade_no": b}],
        )
    ) == (400, "ORDERPAID")

    to_close, c1, c2 = _no("cmb"), _no("s"), _no("s")
    _ok(
        wx.combine_pay(
            combine_out_trade_no=to_close,
            sub_orders=[_sub_order(initiator["mchid"], c1, 10), _sub_order(other["mchid"], c2, 20)],
        )
    )
    assert _error(wx.close(out_trade_no=c1)) == (400, "INVALID_REQUEST")  # only the combined close closes it
    assert _error(
        wx.combine_close(combine_out_trade_no=to_close, sub_orders=[{"mchid": initiator["mchid"], "out_trade_no": c1}])
    ) == (400, "PARAM_ERROR")  # all of them or none
    _ok(
        wx.combine_close(
            combine_out_trade_no=to_close,
            sub_orders=[
                {"mchid": initiator["mchid"], "out_trade_no": c1},
                {"mchid": other["mchid"], "out_trade_no": c2},
            ],
        ),
        204,
    )
    assert {s["trade_state"] for s in _ok(wx.combine_query(combine_out_trade_no=to_close))["sub_orders"]} == {"CLOSED"}

    now = datetime.now(cst)
    expired = _no("cmb")
    _ok(
        wx.combine_pay(
            combine_out_trade_no=expired,
            sub_orders=[_sub_order(initiator["mchid"], _no("s"), 10), _sub_order(other["mchid"], _no("s"), 10)],
            time_start=(now - timedelta(minutes=10)).isoformat(timespec="seconds"),
            time_expire=(now - timedelta(seconds=1)).isoformat(timespec="seconds"),
        )
    )
    assert {s["trade_state"] for s in _ok(wx.combine_query(combine_out_trade_no=expired))["sub_orders"]} == {"CLOSED"}

    stranger = _register(sandbox, appid="wx0000000000000001")  # a merchant the combine_appid is not bound to
    assert _error(wx.combine_pay(combine_out_trade_no=combined, sub_orders=[subs[1], subs[0]])) == (
        403,
        "OUT_TRADE_NO_USED",
    )  # the combined number again, another body
    assert _error(wx.combine_pay(combine_out_trade_no=_no("cmb"), sub_orders=[subs[0]])) == (400, "PARAM_ERROR")
    assert _error(
        wx.combine_pay(
            combine_out_trade_no=_no("cmb"),
            sub_orders=[_sub_order(initiator["mchid"], _no("s"), 10), _sub_order(stranger["mchid"], _no("s"), 10)],
        )
    ) == (400, "APPID_MCHID_NOT_MATCH")
    assert _error(
        wx.combine_pay(
            combine_out_trade_no=_no("cmb"),
            sub_orders=[_sub_order(initiator["mchid"], a, 10), _sub_order(other["mchid"], _no("s"), 10)],
        )
    ) == (403, "OUT_TRADE_NO_USED")  # a sub-order number already used
    assert _error(
        wx.combine_pay(
            combine_out_trade_no=_no("cmb"),
            sub_orders=subs[:1] * 2,
            pay_type=WeChatPayType.JSAPI,
            combine_payer_info={"openid": ""},
        )
    ) == (400, "PARAM_ERROR")
    assert _error(wx.combine_query(combine_out_trade_no=_no("nx"))) == (404, "ORDER_NOT_EXIST")


def test_combined_payment_of_a_service_providers_sub_merchants(
    sandbox: SandboxProcess, receiver: CallbackReceiver
) -> None:
    """The provider's variant: sub-orders name the provider's mchid and a bound sub_mchid; each is then an
    ordinary partner-mode order (queried and refunded with its sub_mchid)."""
    first, second = "1900000201", "1900000202"
    registration = _register(sandbox, sub_merchants=[{"sub_mchid": first}, {"sub_mchid": second}])
    wx = _sdk(sandbox, registration, receiver.url("combine-partner"), partner=True)
    provider, combined, a, b = registration["mchid"], _no("cmb"), _no("sa"), _no("sb")
    subs = [_sub_order(provider, a, 120, sub_mchid=first), _sub_order(provider, b, 80, sub_mchid=second)]
    assert "prepay_id" in _ok(
        wx.combine_pay(combine_out_trade_no=combined, sub_orders=subs, pay_type=WeChatPayType.APP)
    )
    assert _error(
        wx.combine_pay(
            combine_out_trade_no=_no("cmb"),
            sub_orders=[
                _sub_order(provider, _no("s"), 1, sub_mchid=first),
                _sub_order(provider, _no("s"), 1, sub_mchid="1999999999"),
            ],
            pay_type=WeChatPayType.APP,
        )
    ) == (403, "NO_AUTH")
    httpx.post(f"{sandbox.base_url}/control/combine-orders/{combined}/approve").raise_for_status()
    callback = wx.callback(*receiver.next("combine-partner"))
    assert callback is not None
    assert [(s["sub_mchid"], s["trade_state"]) for s in callback["resource"]["sub_orders"]] == [
        (first, "SUCCESS"),
        (second, "SUCCESS"),
    ]
    assert _ok(wx.query(out_trade_no=b, sub_mchid=second))["trade_state"] == "SUCCESS"
    refund = _ok(
        wx.refund(
            out_refund_no=_no("rf"),
            amount={"refund": 80, "total": 80, "currency": "CNY"},
            out_trade_no=b,
            sub_mchid=second,
        )
    )
    assert refund["status"] == "PROCESSING"


def _cst(delta_seconds: float = 0) -> str:
    from datetime import datetime, timedelta, timezone

    moment = datetime.now(timezone(timedelta(hours=8))) + timedelta(seconds=delta_seconds)
    return moment.isoformat(timespec="milliseconds")


def _approve_with_coupon(
    sandbox: SandboxProcess, out_trade_no: str, mchid: str, openid: str, coupon_id: str
) -> httpx.Response:
    """The payer pays the order in WeChat with one of its 代金券."""
    return httpx.post(
        f"{sandbox.base_url}/control/orders/{out_trade_no}/approve",
        params={"mchid": mchid},
        json={"payer_openid": openid, "coupon_id": coupon_id},
    )


def _favor_stock(wx: Any, mchid: str, *, begin_seconds: float = 0, **rule: Any) -> str:
    """A 满100减10 代金券 stock for 3 coupons, at most 2 per user, created with the SDK (usable a week from
    `begin_seconds` on)."""
    stock = _ok(
        wx.marketing_favor_stock_create(
            stock_name="满100减10",
            belong_merchant=mchid,
            available_begin_time=_cst(begin_seconds),
            available_end_time=_cst(begin_seconds + 7 * 86400),
            stock_use_rule={"max_coupons": 3, "max_amount": 3000, "max_coupons_per_user": 2, **rule},
            coupon_use_rule={
                "available_merchants": [mchid],
                "fixed_normal_coupon": {"coupon_amount": 1000, "transaction_minimum": 10000},
            },
            out_request_no=_no("stk"),
        )
    )
    stock_id: str = stock["stock_id"]
    return stock_id


def test_favor_coupons_stock_send_use_in_payment_and_coupon_use_callback(
    sandbox: SandboxProcess, receiver: CallbackReceiver
) -> None:
    """代金券 through the SDK's marketing_favor_* calls: a stock created (budget rule checked), started,
    paused and restarted; coupons sent (idempotent by out_request_no, per-user cap RULE_LIMIT, budget
    NOT_ENOUGH); one used in a payment: the transaction's promotion_detail shows the merchant's
    contribution and payer_total, the coupon is USED, and COUPON.USE reaches the creator's callback URL
    (verified and decrypted by the SDK). A WeChat-run stock's coupon shows as wechatpay_contribute."""
    registration = _register(sandbox)
    mchid = registration["mchid"]
    wx = _sdk(sandbox, registration, receiver.url("favor-pay"))
    openid = "oFavorUser" + secrets.token_hex(6)

    bad = wx.marketing_favor_stock_create(
        stock_name="bad",
        belong_merchant=mchid,
        available_begin_time=_cst(),
        available_end_time=_cst(86400),
        stock_use_rule={"max_coupons": 3, "max_amount": 2000, "max_coupons_per_user": 1},
        coupon_use_rule={
            "available_merchants": [mchid],
            "fixed_normal_coupon": {"coupon_amount": 1000, "transaction_minimum": 10000},
        },
        out_request_no=_no("stk"),
    )
    assert _error(bad) == (400, "PARAM_ERROR")  # max_amount ≠ amount × count

    stock_id = _favor_stock(wx, mchid)
    assert _ok(wx.marketing_favor_stock_detail(mchid, stock_id))["status"] == "unactivated"
    assert _error(wx.marketing_favor_stock_send(stock_id, openid, _no("snd"), mchid)) == (400, "INVALID_REQUEST")
    started = _ok(wx.marketing_favor_stock_start(mchid, stock_id))
    assert started["stock_id"] == stock_id and _ok(wx.marketing_favor_stock_start(mchid, stock_id)) == started
    assert _error(wx.marketing_favor_stock_restart(mchid, stock_id)) == (400, "INVALID_REQUEST")  # never paused
    assert "pause_time" in _ok(wx.marketing_favor_stock_pause(mchid, stock_id))
    assert "restart_time" in _ok(wx.marketing_favor_stock_restart(mchid, stock_id))
    _ok(wx.marketing_favor_callback_update(notify_url=receiver.url("favor-use")))

    request_no = _no("snd")
    coupon_id = _ok(wx.marketing_favor_stock_send(stock_id, openid, request_no, mchid))["coupon_id"]
    assert _ok(wx.marketing_favor_stock_send(stock_id, openid, request_no, mchid))["coupon_id"] == coupon_id
    _ok(wx.marketing_favor_stock_send(stock_id, openid, _no("snd"), mchid))
    assert _error(wx.marketing_favor_stock_send(stock_id, openid, _no("snd"), mchid)) == (403, "RULE_LIMIT")
    _ok(wx.marketing_favor_stock_send(stock_id, openid + "x", _no("snd"), mchid))
    assert _error(wx.marketing_favor_stock_send(stock_id, openid + "y", _no("snd"), mchid)) == (403, "NOT_ENOUGH")
    detail = _ok(wx.marketing_favor_stock_detail(mchid, stock_id))
    assert (detail["status"], detail["distributed_coupons"]) == ("running", 3)
    coupon = _ok(wx.marketing_favor_coupon_detail(coupon_id, openid))
    assert coupon["status"] == "SENDED" and coupon["normal_coupon_information"]["coupon_amount"] == 1000
    assert _ok(wx.marketing_favor_user_coupon(openid, stock_id=stock_id))["total_count"] == 2
    assert _ok(wx.marketing_favor_user_coupon(openid, available_mchid=mchid))["total_count"] == 2
    assert _ok(wx.marketing_favor_user_coupon(openid, available_mchid="1900000999"))["total_count"] == 0
    assert _error(wx.marketing_favor_user_coupon(openid, limit="many")) == (400, "PARAM_ERROR")
    listed = _ok(wx.marketing_favor_stock_list(mchid, status="running", create_start_time=_cst(-3600)))
    assert [s["stock_id"] for s in listed["data"]] == [stock_id]
    assert _ok(wx.marketing_favor_stock_list(mchid, create_start_time=_cst(3600)))["total_count"] == 0
    assert _ok(wx.marketing_favor_stock_list(mchid, create_end_time=_cst(-3600)))["total_count"] == 0
    later = _favor_stock(wx, mchid, begin_seconds=3600)
    _ok(wx.marketing_favor_stock_start(mchid, later))
    assert _error(wx.marketing_favor_stock_send(later, openid, _no("snd"), mchid)) == (400, "INVALID_REQUEST")  # 未开始

    below = _no("fv")
    _ok(wx.pay(description="below the threshold", out_trade_no=below, amount={"total": 9999}))
    refused = _approve_with_coupon(sandbox, below, mchid, openid, coupon_id)
    assert refused.status_code == 409 and _ok(wx.query(out_trade_no=below))["trade_state"] == "NOTPAY"

    paid = _no("fv")
    _ok(wx.pay(description="with a coupon", out_trade_no=paid, amount={"total": 12000}))
    _approve_with_coupon(sandbox, paid, mchid, openid, coupon_id).raise_for_status()
    transaction = _ok(wx.query(out_trade_no=paid))
    assert transaction["amount"] == {"total": 12000, "payer_total": 11000, "currency": "CNY", "payer_currency": "CNY"}
    [promotion] = transaction["promotion_detail"]
    assert (promotion["coupon_id"], promotion["stock_id"], promotion["type"], promotion["amount"]) == (
        coupon_id,
        stock_id,
        "CASH",
        1000,
    )
    assert (promotion["merchant_contribute"], promotion["wechatpay_contribute"], promotion["other_contribute"]) == (
        1000,
        0,
        0,
    )
    headers, body = receiver.next("favor-pay")
    notified = wx.callback(headers, body)
    assert notified is not None and notified["resource"]["promotion_detail"] == transaction["promotion_detail"]
    headers, body = receiver.next("favor-use")
    used = wx.callback(headers, body)  # the SDK's verify + decrypt
    assert used is not None and used["event_type"] == "COUPON.USE"
    assert used["resource"]["coupon_id"] == coupon_id and used["resource"]["status"] == "USED"
    assert used["resource"]["consume_information"]["transaction_id"] == transaction["transaction_id"]
    assert _ok(wx.marketing_favor_coupon_detail(coupon_id, openid))["status"] == "USED"
    refund = _ok(
        wx.refund(
            out_refund_no=_no("fr"), amount={"refund": 6000, "total": 12000, "currency": "CNY"}, out_trade_no=paid
        )
    )
    assert refund["amount"]["discount_refund"] == 500 and refund["amount"]["payer_refund"] == 5500
    assert refund["promotion_detail"][0]["refund_amount"] == 500
    # the trade bill: a 预充值 (CASH) coupon is settled, so 应结订单金额 is the whole 120.00 with 代金券金额 10.00;
    # the refund's 退款金额 is all 60.00 asked (nothing NOCASH to leave out), 5.00 of it 充值券退款金额
    rows = {(row["商户订单号"], row["交易状态"]): row for row in _bill_rows(wx)}
    columns = ("订单金额", "代金券金额", "应结订单金额")
    assert tuple(rows[(paid, "SUCCESS")][c] for c in columns) == ("120.00", "10.00", "120.00")
    columns = ("申请退款金额", "退款金额", "充值券退款金额")
    assert tuple(rows[(paid, "REFUND")][c] for c in columns) == ("60.00", "60.00", "5.00")
    # the rest in two refunds: each coupon share by cumulative floors, so the whole coupon comes back (5.00 +
    # 2.77 + 2.23 = 10.00; ⌊refund × coupon / total⌋ each time would give back 9.99)
    shares = [
        _ok(
            wx.refund(
                out_refund_no=_no("fr"), amount={"refund": part, "total": 12000, "currency": "CNY"}, out_trade_no=paid
            )
        )["amount"]["discount_refund"]
        for part in (3333, 2667)
    ]
    assert shares == [277, 223]

    again = _no("fv")
    _ok(wx.pay(description="the same coupon again", out_trade_no=again, amount={"total": 12000}))
    twice = _approve_with_coupon(sandbox, again, mchid, openid, coupon_id)
    assert twice.status_code == 409 and _ok(wx.query(out_trade_no=again))["trade_state"] == "NOTPAY"

    wechat_stock = httpx.post(
        f"{sandbox.base_url}/control/favor/stocks",
        json={
            "stock_name": "微信立减",
            "coupon_amount": 500,
            "transaction_minimum": 1000,
            "max_coupons": 10,
            "available_merchants": [mchid],
        },
    ).json()
    gift = httpx.post(
        f"{sandbox.base_url}/control/favor/stocks/{wechat_stock['stock_id']}/send",
        json={"openid": openid, "appid": APPID},
    ).json()["coupon_id"]
    code = _payer_code(sandbox, openid=openid, coupon_id=gift)
    charged = _ok(
        wx.pay(
            description="付款码 with WeChat's coupon",
            out_trade_no=_no("fc"),
            amount={"total": 1500},
            payer={"auth_code": code},
            pay_type=WeChatPayType.CODEPAY,
        )
    )
    [channel] = charged["promotion_detail"]
    assert (channel["wechatpay_contribute"], channel["merchant_contribute"], charged["amount"]["payer_total"]) == (
        500,
        0,
        1000,
    )

    # 付款码 with the password step: the code's coupon is used when the payer confirms; a code whose
    # coupon no longer applies by then (used meanwhile) is charged without it, as a code charged at once.
    other_payer = openid + "z"
    second_gift = httpx.post(
        f"{sandbox.base_url}/control/favor/stocks/{wechat_stock['stock_id']}/send",
        json={"openid": other_payer, "appid": APPID},
    ).json()["coupon_id"]
    confirmed = []
    for _ in range(2):
        out_trade_no = _no("fp")
        code = _payer_code(sandbox, openid=other_payer, coupon_id=second_gift, password_required=True)
        status, _message = wx.pay(
            description="付款码 with a password and a coupon",
            out_trade_no=out_trade_no,
            amount={"total": 1500},
            payer={"auth_code": code},
            pay_type=WeChatPayType.CODEPAY,
        )
        assert status == 202
        _approve(sandbox, out_trade_no, mchid)  # the payer typed the password
        confirmed.append(_ok(wx.query(out_trade_no=out_trade_no)))
    assert [(t["trade_state"], t["amount"]["payer_total"]) for t in confirmed] == [("SUCCESS", 1000), ("SUCCESS", 1500)]
    assert [p["coupon_id"] for p in confirmed[0]["promotion_detail"]] == [second_gift]
    assert confirmed[1]["promotion_detail"] == []


def _bill_rows(wx: Any) -> list[dict[str, str]]:
    """Today's ALL trade bill rows by header, downloaded through the SDK as a merchant does."""
    from datetime import datetime, timedelta, timezone

    today = datetime.now(timezone(timedelta(hours=8))).date().isoformat()
    code, content = wx.download_bill(_ok(wx.trade_bill(bill_date=today))["download_url"])
    assert code == 200
    header, *lines = gzip.decompress(content).decode("utf-8").split("\r\n")  # the SDK asks for GZIP
    rows = lines[: lines.index(next(line for line in lines if line.startswith("总交易单数")))]
    return [dict(zip(header.split(","), row[1:].split(",`"), strict=True)) for row in rows]


def test_busifavor_merchant_coupons_claimed_used_returned_and_deactivated(
    sandbox: SandboxProcess, receiver: CallbackReceiver
) -> None:
    """商家券 through the SDK's marketing_busifavor_* calls: a stock created (replayed by out_request_no) and
    queried; a user's claim in WeChat reaches the merchant as COUPON.SEND (verified and decrypted by the SDK);
    the merchant redeems it (idempotent by use_request_no, a second use refused), gives it back, deactivates it."""
    registration = _register(sandbox)
    mchid = registration["mchid"]
    wx = _sdk(sandbox, registration, receiver.url("unused"))
    openid = "oBusi" + secrets.token_hex(6)
    _ok(wx.marketing_busifavor_callback_update(notify_url=receiver.url("busifavor")))
    assert _ok(wx.marketing_busifavor_callback_query())["notify_url"] == receiver.url("busifavor")
    rule = {
        "coupon_available_time": {"available_begin_time": _cst(), "available_end_time": _cst(30 * 86400)},
        "fixed_normal_coupon": {"discount_amount": 500, "transaction_minimum": 3000},
        "use_method": "OFF_LINE",
    }
    request_no = _no("bst")
    arguments = dict(
        stock_name="满30减5",
        belong_merchant=mchid,
        goods_name="全场",
        stock_type="NORMAL",
        coupon_use_rule=rule,
        stock_send_rule={"max_coupons": 10, "max_coupons_per_user": 1},
        out_request_no=request_no,
        coupon_code_mode="WECHATPAY_MODE",
    )
    stock_id = _ok(wx.marketing_busifavor_stock_create(**arguments))["stock_id"]
    assert _ok(wx.marketing_busifavor_stock_create(**arguments))["stock_id"] == stock_id

    claimed = httpx.post(
        f"{sandbox.base_url}/control/busifavor/stocks/{stock_id}/claims", json={"openid": openid, "appid": APPID}
    )
    assert claimed.status_code == 200, claimed.text
    code = claimed.json()["coupon_code"]
    again = httpx.post(
        f"{sandbox.base_url}/control/busifavor/stocks/{stock_id}/claims", json={"openid": openid, "appid": APPID}
    )
    assert again.status_code == 409  # one per user
    headers, body = receiver.next("busifavor")
    sent = wx.callback(headers, body)
    assert sent is not None and sent["event_type"] == "COUPON.SEND"
    assert (sent["resource"]["coupon_code"], sent["resource"]["openid"]) == (code, openid)
    stock = _ok(wx.marketing_busifavor_stock_query(stock_id))
    assert stock["send_count_information"] == {"total_send_num": 1, "total_send_amount": 500}

    use_no, use_time = _no("use"), _cst()
    used = _ok(wx.marketing_busifavor_coupon_use(code, use_time, use_no, stock_id=stock_id, openid=openid))
    assert used["openid"] == openid and "wechatpay_use_time" in used
    assert _ok(wx.marketing_busifavor_coupon_use(code, use_time, use_no, stock_id=stock_id, openid=openid)) == used
    twice = wx.marketing_busifavor_coupon_use(code, _cst(), _no("use"), stock_id=stock_id, openid=openid)
    assert _error(twice) == (400, "INVALID_REQUEST")
    assert _ok(wx.marketing_busifavor_coupon_detail(code, openid))["coupon_state"] == "USED"
    assert "wechatpay_return_time" in _ok(wx.marketing_busifavor_coupon_return(code, stock_id, _no("ret")))
    assert "wechatpay_deactivate_time" in _ok(wx.marketing_busifavor_coupon_deactivate(code, stock_id, _no("dea")))
    assert _error(wx.marketing_busifavor_user_coupon(openid, offset="first")) == (400, "PARAM_ERROR")
    listed = _ok(wx.marketing_busifavor_user_coupon(openid, stock_id=stock_id))
    assert [c["coupon_state"] for c in listed["data"]] == ["DEACTIVATED"]

    # A stock's window bounds its coupons: none is claimed outside it, and one not used by its end is
    # EXPIRED (shown so, and no longer usable).
    def stock_open_for(begin: float, end: float) -> str:
        window = {"available_begin_time": _cst(begin), "available_end_time": _cst(end)}
        created = wx.marketing_busifavor_stock_create(
            **{
                **arguments,
                "out_request_no": _no("bst"),
                "coupon_use_rule": {**rule, "coupon_available_time": window},
            }
        )
        return str(_ok(created)["stock_id"])

    ended = stock_open_for(-7200, -3600)
    refused = httpx.post(
        f"{sandbox.base_url}/control/busifavor/stocks/{ended}/claims", json={"openid": openid, "appid": APPID}
    )
    assert refused.status_code == 409
    ending = stock_open_for(-60, 4)
    claimed = httpx.post(
        f"{sandbox.base_url}/control/busifavor/stocks/{ending}/claims", json={"openid": openid, "appid": APPID}
    )
    assert claimed.status_code == 200, claimed.text
    late_code = claimed.json()["coupon_code"]
    deadline = time.monotonic() + 30  # bounded: the window ends a few seconds from its creation
    while _ok(wx.marketing_busifavor_coupon_detail(late_code, openid))["coupon_state"] != "EXPIRED":
        assert time.monotonic() < deadline, "the coupon never expired"
        time.sleep(0.1)
    assert _ok(wx.marketing_busifavor_user_coupon(openid, stock_id=ending, coupon_state="EXPIRED"))["total_count"] == 1
    late_use = wx.marketing_busifavor_coupon_use(late_code, _cst(), _no("use"), stock_id=ending, openid=openid)
    assert _error(late_use) == (400, "INVALID_REQUEST")
