"""Forged channel notifications change nothing; expiry closes at the channel and locally; late success."""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .conftest import WECHAT_APPID, WECHAT_MCHID, Sandboxes, WebhookReceiver, approve, qr_payment, wait_for


def _rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def _wechat_notification(
    sandboxes: Sandboxes, out_trade_no: str, *, key: rsa.RSAPrivateKey, tamper_ciphertext: bool = False
) -> tuple[dict[str, str], bytes]:
    """A TRANSACTION.SUCCESS callback built like the channel builds it, signed with `key`."""
    resource = json.dumps(
        {
            "mchid": WECHAT_MCHID,
            "appid": WECHAT_APPID,
            "out_trade_no": out_trade_no,
            "transaction_id": "4200000000000000000000000001",
            "trade_type": "NATIVE",
            "trade_state": "SUCCESS",
            "trade_state_desc": "ok",
            "bank_type": "OTHERS",
            "attach": "",
            "success_time": datetime.now(UTC).isoformat(),
            "payer": {"openid": "o_forged"},
            "amount": {"total": 100, "payer_total": 100, "currency": "CNY", "payer_currency": "CNY"},
        }
    ).encode()
    nonce = "abcdefghijkl"
    sealed = AESGCM(sandboxes.wechat_merchant["apiv3_key"].encode()).encrypt(nonce.encode(), resource, b"transaction")
    if tamper_ciphertext:
        sealed = bytes([sealed[0] ^ 1]) + sealed[1:]
    body = json.dumps(
        {
            "id": "EV-forged",
            "create_time": datetime.now(UTC).isoformat(),
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "summary": "ok",
            "resource": {
                "original_type": "transaction",
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(sealed).decode(),
                "associated_data": "transaction",
                "nonce": nonce,
            },
        }
    ).encode()
    timestamp, sig_nonce = str(int(time.time())), "n" + os.urandom(8).hex()
    headers = {
        "Content-Type": "application/json",
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": sig_nonce,
        "Wechatpay-Serial": sandboxes.wechat_merchant["platform_public_key_id"],
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
        "Wechatpay-Signature": _rsa_sign(key, f"{timestamp}\n{sig_nonce}\n".encode() + body + b"\n"),
    }
    return headers, body


def _platform_key(sandboxes: Sandboxes) -> rsa.RSAPrivateKey:
    pem = (sandboxes.data_dir / "sandboxes" / "wechatpay" / "platform_private_key.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _alipay_notification(sandboxes: Sandboxes, out_trade_no: str, *, key: rsa.RSAPrivateKey) -> str:
    """A TRADE_SUCCESS notification of 1.00 yuan as Alipay posts it (form body), signed RSA2 with `key`."""
    params = {
        "notify_type": "trade_status_sync",
        "notify_id": "n1",
        "notify_time": "2024-01-01 00:00:00",
        "app_id": sandboxes.alipay_app["app_id"],
        "charset": "utf-8",
        "version": "1.0",
        "trade_no": "2024010122002",
        "out_trade_no": out_trade_no,
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "1.00",
        "gmt_payment": "2024-01-01 00:00:00",
        "seller_id": sandboxes.alipay_app["seller_id"],
    }
    content = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    params.update(sign_type="RSA2", sign=_rsa_sign(key, content.encode()))
    return urlencode(params)


async def test_forged_notifications_are_refused_and_change_nothing(
    start_cashier: Any, sandboxes: Sandboxes, webhook_receiver: WebhookReceiver
) -> None:
    cashier = await start_cashier(poll_initial_seconds=600)
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=2)
    wx = (await cashier.post("/v1/payments", qr_payment(preferred_channels=["wechatpay"]))).json()
    ali = (await cashier.post("/v1/payments", qr_payment(preferred_channels=["alipay"]))).json()
    wx_trade, ali_trade = wx["attempts"][0]["out_trade_no"], ali["attempts"][0]["out_trade_no"]
    wx_url = f"/v1/notify/wechatpay/{cashier.merchant_id}"
    ali_url = f"/v1/notify/alipay/{cashier.merchant_id}"
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    async with httpx.AsyncClient(base_url=cashier.base_url) as client:
        # WeChat: signed with the wrong key.
        headers, body = _wechat_notification(sandboxes, wx_trade, key=stranger)
        wrong_key = await client.post(wx_url, content=body, headers=headers)
        # WeChat: the platform's own key signs it, but the ciphertext was tampered with.
        headers, body = _wechat_notification(sandboxes, wx_trade, key=_platform_key(sandboxes), tamper_ciphertext=True)
        tampered = await client.post(wx_url, content=body, headers=headers)
        # WeChat: a valid signature over another body.
        headers, body = _wechat_notification(sandboxes, wx_trade, key=_platform_key(sandboxes))
        swapped = await client.post(wx_url, content=body.replace(b"EV-forged", b"EV-forgee"), headers=headers)
        # Alipay: a TRADE_SUCCESS signed with a key that is not Alipay's.
        forged_ali = await client.post(
            ali_url,
            content=_alipay_notification(sandboxes, ali_trade, key=stranger),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    for reply in (wrong_key, tampered, swapped):
        assert reply.status_code >= 400 and reply.json()["code"] == "FAIL", reply.text
    assert forged_ali.status_code == 200 and forged_ali.text != "success"
    assert (await cashier.payment(wx["id"]))["status"] == "processing"
    assert (await cashier.payment(ali["id"]))["status"] == "processing"
    assert await cashier.outbox_count("payment.succeeded") == 0
    assert webhook_receiver.delivered() == []


async def test_expiry_closes_at_channel_and_locally(
    start_cashier: Any, sandboxes: Sandboxes, webhook_receiver: WebhookReceiver
) -> None:
    cashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    expire_at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    payment = (await cashier.post("/v1/payments", qr_payment(expire_at=expire_at))).json()
    out_trade_no = payment["attempts"][0]["out_trade_no"]

    closed = await cashier.wait_status(payment["id"], "closed")
    # Either our expiry loop closed it, or the channel's own time_expire did and a query saw it first.
    assert closed["failure_code"] in ("expired", "closed_at_channel")
    assert closed["attempts"][0]["status"] == "closed"
    async with httpx.AsyncClient() as client:
        at_channel = await client.get(
            f"{sandboxes.wechat.base_url}/control/orders/{out_trade_no}", params={"mchid": WECHAT_MCHID}
        )
    assert at_channel.json()["order"]["trade_state"] == "CLOSED", at_channel.text
    assert await cashier.outbox_count("payment.closed", payment["id"]) == 1
    hooks = await wait_for(webhook_receiver.delivered, "the webhook")
    assert json.loads(hooks[0].body)["type"] == "payment.closed"


async def test_success_after_close_is_kept_and_flagged(
    start_cashier: Any, sandboxes: Sandboxes, webhook_receiver: WebhookReceiver
) -> None:
    """Alipay precreate: closing an unscanned QR finds no trade at Alipay, the QR stays payable until its
    time_expire, and the payer pays: the money is real, so the payment becomes succeeded, flagged."""
    cashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    payment = (await cashier.post("/v1/payments", qr_payment())).json()
    closed = await cashier.post(f"/v1/payments/{payment['id']}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed", closed.text

    await approve(sandboxes, "alipay", payment["attempts"][0]["out_trade_no"])
    late = await cashier.wait_status(payment["id"], "succeeded")
    assert late["late_success"] is True
    assert await cashier.outbox_count("payment.closed", payment["id"]) == 1
    assert await cashier.outbox_count("payment.succeeded", payment["id"]) == 1
    hooks = await wait_for(lambda: len(webhook_receiver.delivered()) >= 2 and webhook_receiver.delivered(), "hooks")
    assert [json.loads(h.body)["type"] for h in hooks] == ["payment.closed", "payment.succeeded"]
    assert json.loads(hooks[1].body)["data"]["late_success"] is True


async def test_a_notification_signed_with_a_replaced_key_is_refused(
    start_cashier: Any, sandboxes: Sandboxes, webhook_receiver: WebhookReceiver
) -> None:
    """The cashier verifies a notification with the connector it built before (no config read), but applies it only
    if the config is still that version: after the channel's key is replaced, a notification signed with the old key
    is refused, and one signed with the new key is applied (docs/performance.md, fifth pass)."""
    cashier = await start_cashier(poll_initial_seconds=600)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    created = (await cashier.post("/v1/payments", qr_payment(preferred_channels=["alipay"]))).json()
    trade = created["attempts"][0]["out_trade_no"]  # the create built (and the cashier keeps) the connector
    pem = (sandboxes.data_dir / "sandboxes" / "alipay" / "alipay_platform.pem").read_bytes()
    old_key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(old_key, rsa.RSAPrivateKey)
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    new_public = new_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    await cashier.configure("alipay", sandboxes.alipay_config(alipay_public_key_pem=new_public.decode()), priority=1)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    url = f"/v1/notify/alipay/{cashier.merchant_id}"
    async with httpx.AsyncClient(base_url=cashier.base_url) as client:
        revoked = await client.post(url, content=_alipay_notification(sandboxes, trade, key=old_key), headers=form)
        assert revoked.status_code == 200 and revoked.text != "success", revoked.text
        assert (await cashier.payment(created["id"]))["status"] == "processing"
        assert await cashier.outbox_count("payment.succeeded") == 0
        current = await client.post(url, content=_alipay_notification(sandboxes, trade, key=new_key), headers=form)
    assert current.status_code == 200 and current.text == "success", current.text
    assert (await cashier.payment(created["id"]))["status"] == "succeeded"
    assert await cashier.outbox_count("payment.succeeded") == 1
