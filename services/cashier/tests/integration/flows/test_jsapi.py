"""JSAPI / mini-program payments end to end for both channels: the payer's id comes from the sandboxes' OAuth,
`payer_action` carries what the page needs to open the in-app pay, and the payer paying it succeeds the payment."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from services.cashier.connectors.alipay import AlipayConfig, AlipayConnector
from services.cashier.connectors.wechatpay.signing import verify_sha256_rsa

from .conftest import WECHAT_APPID, WECHAT_MCHID, Sandboxes, approve


def in_app_payment(scene: str, payer: dict[str, str]) -> dict[str, Any]:
    return {
        "merchant_order_no": f"mp_{uuid.uuid4().hex[:16]}",
        "amount_minor": 1_990,
        "currency": "CNY",
        "description": "Canteen lunch",
        "scene": scene,
        "payer": payer,
    }


async def wechat_openid(sandboxes: Sandboxes) -> str:
    """The page's OAuth: the user authorises (sandbox control), the page's backend trades the code for the openid
    at /sns/oauth2/access_token with the app secret, as on api.weixin.qq.com."""
    async with httpx.AsyncClient(base_url=sandboxes.wechat.base_url, timeout=10) as client:
        authorised = await client.post("/control/oauth-codes", json={"appid": WECHAT_APPID})
        assert authorised.status_code == 200, authorised.text
        token = await client.get(
            "/sns/oauth2/access_token",
            params={
                "appid": WECHAT_APPID,
                "secret": sandboxes.wechat_merchant["app_secrets"][WECHAT_APPID],
                "code": authorised.json()["code"],
                "grant_type": "authorization_code",
            },
        )
    assert token.status_code == 200 and "openid" in token.json(), token.text
    assert token.json()["openid"] == authorised.json()["openid"]
    return str(token.json()["openid"])


async def alipay_buyer_id(sandboxes: Sandboxes) -> str:
    """alipay.system.oauth.token through the connector (what the page's backend calls with the auth_code)."""
    async with httpx.AsyncClient(base_url=sandboxes.alipay.base_url, timeout=10) as client:
        authorised = await client.post("/control/oauth-codes", json={"app_id": sandboxes.alipay_app["app_id"]})
    assert authorised.status_code == 200, authorised.text
    connector = AlipayConnector(AlipayConfig.model_validate(sandboxes.alipay_config()))
    try:
        return await connector.oauth_user_id(str(authorised.json()["auth_code"]))
    finally:
        await connector.aclose()


async def test_a_wechat_jsapi_payment_with_an_oauth_openid(start_cashier: Any, sandboxes: Sandboxes) -> None:
    cashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=2)
    openid = await wechat_openid(sandboxes)
    created = await cashier.post("/v1/payments", in_app_payment("jsapi", {"openid": openid}))
    assert created.status_code == 201, created.text
    payment = created.json()
    # Only WeChat can take an openid-only in-app payer, whatever the merchant's channel order.
    assert (payment["status"], payment["channel"]) == ("processing", "wechatpay")
    assert payment["payer_action"]["type"] == "jsapi"
    action = payment["payer_action"]["jsapi_params"]  # handed to WeixinJSBridge as they are
    assert action["appId"] == WECHAT_APPID and action["signType"] == "RSA"
    assert action["package"] == f"prepay_id={payment['payer_action']['channel_data']['prepay_id']}"
    # paySign is the merchant's RSA signature the WeChat client checks before it opens the cashier.
    key = load_pem_private_key(sandboxes.wechat_merchant["merchant_private_key_pem"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    message = f"{action['appId']}\n{action['timeStamp']}\n{action['nonceStr']}\n{action['package']}\n".encode()
    assert verify_sha256_rsa(key.public_key(), message, action["paySign"])

    await approve(sandboxes, "wechatpay", payment["attempts"][0]["out_trade_no"])
    succeeded = await cashier.wait_status(payment["id"], "succeeded")
    assert succeeded["channel_trade_no"]
    async with httpx.AsyncClient(timeout=10) as client:
        order = await client.get(
            f"{sandboxes.wechat.base_url}/control/orders/{payment['attempts'][0]['out_trade_no']}",
            params={"mchid": WECHAT_MCHID},
        )
    assert order.json()["order"]["payer"]["openid"] == openid


async def test_an_alipay_mini_program_payment_with_an_oauth_buyer_id(start_cashier: Any, sandboxes: Sandboxes) -> None:
    cashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=2)
    buyer_id = await alipay_buyer_id(sandboxes)
    assert buyer_id.startswith("2088")
    created = await cashier.post("/v1/payments", in_app_payment("mini_program", {"buyer_id": buyer_id}))
    assert created.status_code == 201, created.text
    payment = created.json()
    assert (payment["status"], payment["channel"]) == ("processing", "alipay")
    action = payment["payer_action"]
    assert action["type"] == "jsapi" and action["jsapi_params"]["tradeNO"]  # my.tradePay({tradeNO})

    await approve(sandboxes, "alipay", payment["attempts"][0]["out_trade_no"])
    succeeded = await cashier.wait_status(payment["id"], "succeeded")
    assert succeeded["channel_trade_no"] == action["jsapi_params"]["tradeNO"]
    async with httpx.AsyncClient(timeout=10) as client:
        trade = await client.get(
            f"{sandboxes.alipay.base_url}/control/trades/{payment['attempts'][0]['out_trade_no']}",
            params={"app_id": sandboxes.alipay_app["app_id"]},
        )
    assert trade.json()["buyer_id"] == buyer_id


async def test_an_in_app_payment_without_the_payer_is_refused(start_cashier: Any, sandboxes: Sandboxes) -> None:
    cashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    refused = await cashier.post("/v1/payments", in_app_payment("jsapi", {"buyer_id": "2088000000000001"}))
    assert refused.status_code == 422 and refused.json()["code"] == "validation_failed", refused.text
