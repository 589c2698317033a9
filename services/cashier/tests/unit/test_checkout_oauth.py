"""The hosted checkout inside the WeChat / Alipay apps: the OAuth state, the authorize URLs, and the code exchange
and bridge signature against the channel sandboxes (in-process ASGI apps, the real sandbox code; seconds).

The state binds one page token and one channel and expires; the WeChat code is redeemed once with the AppSecret;
the JSAPI paySign the connector makes is the one the app (the sandbox's bridge) verifies with the merchant's
public key, and a paySign that does not verify pays nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from libs.common.errors import Problem
from sandboxes.alipay.app import create_app as alipay_app
from sandboxes.alipay.settings import SandboxSettings as AlipaySettings
from sandboxes.wechatpay.app import create_app as wechat_app
from sandboxes.wechatpay.settings import SandboxSettings as WechatSettings
from services.cashier.connectors.alipay import AlipayConfig, AlipayConnector
from services.cashier.connectors.alipay import oauth as alipay_oauth
from services.cashier.connectors.base import ChannelError, PrepayRequest
from services.cashier.connectors.wechatpay import WechatPayConfig, WechatPayConnector
from services.cashier.connectors.wechatpay import oauth as wechat_oauth
from services.cashier.domain import checkout_oauth as rules
from services.cashier.domain.payments import PaymentScene

SECRET = "s" * 43
TOKEN = "cst_" + "A" * 43
NOW = 1_800_000_000
WECHAT, ALIPAY = "http://wechat.sandbox", "http://alipay.sandbox"
BACK = "https://pay.example/checkout/cst_x/oauth/wechatpay"


def test_a_state_is_bound_to_its_page_and_channel_and_expires() -> None:
    state = rules.sign_state(SECRET, token=TOKEN, channel="wechatpay", now_unix=NOW)
    assert state.isalnum() and len(state) <= 128  # WeChat takes only [A-Za-z0-9], at most 128 bytes
    nonce = rules.verify_state(SECRET, state, token=TOKEN, channel="wechatpay", now_unix=NOW + 1)
    assert rules.request_id_of(nonce) == f"oauth_{nonce}"
    refused = [
        (state, "cst_" + "B" * 43, "wechatpay", NOW),  # another page
        (state, TOKEN, "alipay", NOW),  # another channel
        (state, TOKEN, "wechatpay", NOW + rules.STATE_SECONDS),  # expired
        (state[:-1] + ("0" if state[-1] != "0" else "1"), TOKEN, "wechatpay", NOW),  # tampered
        ("1" * 66, TOKEN, "wechatpay", NOW),
        ("not-a-state", TOKEN, "wechatpay", NOW),
    ]
    for candidate, token, channel, now in refused:
        with pytest.raises(Problem) as caught:
            rules.verify_state(SECRET, candidate, token=token, channel=channel, now_unix=now)
        assert caught.value.spec is rules.CHECKOUT_OAUTH_STATE_INVALID
    with pytest.raises(Problem):  # another secret (a rotated one) signed nothing
        rules.verify_state("t" * 43, state, token=TOKEN, channel="wechatpay", now_unix=NOW)


def _wechat_config(**overrides: Any) -> WechatPayConfig:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fields: dict[str, Any] = {
        "merchant_private_key_pem": pem.decode(),
        "merchant_cert_serial": "AB",
        "apiv3_key": "k" * 32,
        "mchid": "1900000001",
        "appid": "wx8888888888888888",
    }
    return WechatPayConfig(**{**fields, **overrides})


def test_the_authorize_urls_are_the_channels_documented_ones() -> None:
    url = wechat_oauth.authorize_url(_wechat_config(), redirect_uri=BACK, state="abc123")
    assert url == (
        "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx8888888888888888&redirect_uri="
        "https%3A%2F%2Fpay.example%2Fcheckout%2Fcst_x%2Foauth%2Fwechatpay&response_type=code&scope=snsapi_base"
        "&state=abc123#wechat_redirect"
    )
    sandboxed = wechat_oauth.authorize_url(_wechat_config(base_url=WECHAT), redirect_uri=BACK, state="abc123")
    assert sandboxed.startswith(f"{WECHAT}/connect/oauth2/authorize?appid=wx8888888888888888&")
    partner = _wechat_config(
        mchid=None, appid=None, sp_mchid="1900000100", sp_appid="wxsp", sub_mchid="1900000109", sub_appid="wxsub"
    )
    assert "appid=wxsub&" in wechat_oauth.authorize_url(partner, redirect_uri=BACK, state="s")  # the payer's appid
    config = AlipayConfig.model_validate(
        {"app_id": "2021000000000001", "app_private_key_pem": "x", "alipay_public_key_pem": "y"}
    )
    assert alipay_oauth.authorize_url(config, redirect_uri=BACK, state="abc") == (
        "https://openauth.alipay.com/oauth2/publicAppAuthorize.htm?app_id=2021000000000001&scope=auth_base"
        "&redirect_uri=https%3A%2F%2Fpay.example%2Fcheckout%2Fcst_x%2Foauth%2Fwechatpay&state=abc"
    )
    sandboxed_alipay = config.model_copy(update={"gateway_url": f"{ALIPAY}/gateway.do"})
    assert alipay_oauth.authorize_url(sandboxed_alipay, redirect_uri=BACK, state="abc").startswith(
        f"{ALIPAY}/oauth2/publicAppAuthorize.htm?app_id=2021000000000001&scope=auth_base&"
    )


@pytest.fixture
async def wechat(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = wechat_app(WechatSettings(data_dir=tmp_path / "wechatpay", notify_scale=0.001))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=WECHAT) as client:
        yield client


def _code_of(answer: httpx.Response, name: str) -> dict[str, str]:
    assert answer.status_code == 302, answer.text
    return dict(parse_qsl(urlsplit(answer.headers["location"]).query)) | {"_": name}


async def test_wechat_code_is_redeemed_once_and_the_bridge_verifies_pay_sign(wechat: httpx.AsyncClient) -> None:
    appid, mchid = (
        "wx" + uuid.uuid4().hex[:16],
        "19" + uuid.uuid4().hex[:8].translate(str.maketrans("abcdef", "123456")),
    )
    reg = (
        await wechat.post("/control/merchants", json={"mchid": mchid, "appid": appid, "generate_key_pair": True})
    ).json()
    config = WechatPayConfig(
        base_url=WECHAT,
        mchid=mchid,
        appid=appid,
        app_secret=reg["app_secrets"][appid],
        merchant_private_key_pem=reg["merchant_private_key_pem"],
        merchant_cert_serial=reg["merchant_cert_serial"],
        platform_public_key_pem=reg["platform_public_key_pem"],
        platform_public_key_id=reg["platform_public_key_id"],
        apiv3_key=reg["apiv3_key"],
    )
    connector = WechatPayConnector(config, http_client=wechat)
    url = wechat_oauth.authorize_url(config, redirect_uri=BACK, state="st4te")
    back = _code_of(await wechat.get(url.split("#")[0].removeprefix(WECHAT)), "wechat")
    assert back["state"] == "st4te" and back["code"]
    openid = await connector.oauth_openid(back["code"])
    assert openid.startswith("o")
    with pytest.raises(ChannelError) as used:  # a code is single use
        await connector.oauth_openid(back["code"])
    assert used.value.code == "INVALID_CODE"
    wrong = WechatPayConnector(
        _wechat_config(base_url=WECHAT, mchid=mchid, appid=appid, app_secret="0" * 32), http_client=wechat
    )
    again = _code_of(await wechat.get(url.split("#")[0].removeprefix(WECHAT)), "wechat")
    with pytest.raises(ChannelError) as refused:
        await wrong.oauth_openid(again["code"])
    assert refused.value.code == "CONFIG_ERROR"

    out_trade_no = "ck" + uuid.uuid4().hex[:20]
    prepaid = await connector.prepay(
        PrepayRequest(
            out_trade_no=out_trade_no,
            amount_minor=2_500,
            currency="CNY",
            description="停车",
            scene=PaymentScene.JSAPI,
            payer_openid=openid,
            notify_url="https://juhe.example/notify",
        )
    )
    params = {k: prepaid.payer_action[k] for k in ("appId", "timeStamp", "nonceStr", "package", "signType", "paySign")}
    forged = {**params, "paySign": params["paySign"][:-4] + ("AAAA" if params["paySign"][-4:] != "AAAA" else "BBBB")}
    for bad in (forged, {**params, "timeStamp": str(int(params["timeStamp"]) + 1)}, {**params, "appId": "wxother"}):
        answer = (await wechat.post("/control/app-bridge/wechat/pay", json=bad)).json()
        assert answer["err_msg"] == "get_brand_wcpay_request:fail", answer
    order = (await wechat.get(f"/control/orders/{out_trade_no}")).json()["order"]
    assert order["trade_state"] == "NOTPAY"  # nothing paid on a signature the app refuses
    answer = (await wechat.post("/control/app-bridge/wechat/pay", json=params)).json()
    assert answer == {"err_msg": "get_brand_wcpay_request:ok"}
    order = (await wechat.get(f"/control/orders/{out_trade_no}")).json()["order"]
    assert order["trade_state"] == "SUCCESS" and order["payer"]["openid"] == openid


async def test_alipay_auth_code_gives_the_buyer_and_trade_pay_pays_its_trade(tmp_path: Path) -> None:
    app = alipay_app(AlipaySettings(data_dir=tmp_path / "alipay"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ALIPAY) as alipay:
        reg = (await alipay.post("/control/apps", json={})).json()
        config = AlipayConfig.model_validate(
            {
                "gateway_url": f"{ALIPAY}/gateway.do",
                "app_id": reg["app_id"],
                "app_private_key_pem": reg["app_private_key_pem"],
                "alipay_public_key_pem": reg["alipay_public_key_pem"],
            }
        )
        connector = AlipayConnector(config, http_client=alipay)
        url = alipay_oauth.authorize_url(config, redirect_uri=BACK, state="st4te")
        back = _code_of(await alipay.get(url.removeprefix(ALIPAY)), "alipay")
        assert back["state"] == "st4te" and back["app_id"] == reg["app_id"]
        buyer_id = await connector.oauth_user_id(back["auth_code"])
        assert buyer_id.startswith("2088")
        with pytest.raises(ChannelError):  # single use
            await connector.oauth_user_id(back["auth_code"])
        out_trade_no = "ck" + uuid.uuid4().hex[:20]
        prepaid = await connector.prepay(
            PrepayRequest(
                out_trade_no=out_trade_no,
                amount_minor=1_800,
                currency="CNY",
                description="Tuition",
                scene=PaymentScene.JSAPI,
                payer_openid=buyer_id,
                notify_url="https://juhe.example/notify",
            )
        )
        trade_no = prepaid.payer_action["trade_no"]
        other = (
            await alipay.post(
                "/control/app-bridge/alipay/trade-pay",
                params={"buyer_id": "2088000000000009"},
                json={"tradeNO": trade_no},
            )
        ).json()
        assert other["resultCode"] == "4000"  # another user's app cannot pay this buyer's trade
        paid = (await alipay.post("/control/app-bridge/alipay/trade-pay", json={"tradeNO": trade_no})).json()
        assert paid["resultCode"] == "9000", paid
        trade = (await alipay.get(f"/control/trades/{out_trade_no}")).json()
        assert trade["status"] == "TRADE_SUCCESS" and trade["buyer_id"] == buyer_id
