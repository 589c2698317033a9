"""The checkout page's pure parts: which flow a device gets, the QR as inline SVG without script, which wallet an
in-app browser is and what it may offer, the 码牌 poster."""

from __future__ import annotations

import xml.dom.minidom

import pytest

from web.pages.checkout import _bridge, app_wallet, offered, qr_svg, scene_for
from web.pages.payment_links import poster_svg

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"
WECHAT = IPHONE + " MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN"
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def test_desktop_gets_a_qr_and_phones_the_channels_page() -> None:
    assert scene_for(DESKTOP) == "native_qr"
    assert scene_for(IPHONE) == "h5"
    assert scene_for(WECHAT) == "jsapi"  # inside the app: its authorisation, then its bridge
    assert scene_for("") == "native_qr"


def test_the_qr_is_small_inline_svg_without_script() -> None:
    svg = qr_svg("weixin://wxpay/bizpayurl?pr=abcdefghij")
    assert svg.startswith("<svg") and "<script" not in svg and "href" not in svg
    assert len(svg) < 10_000


WECHAT_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2f)"
ALIPAY_UA = "Mozilla/5.0 (Linux; Android 14) Mobile Safari/537.36 AlipayClient/10.5.96.8000 Language/zh-Hans"
DESKTOP_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"


@pytest.mark.parametrize(
    ("user_agent", "wallet", "methods"),
    [
        (WECHAT_UA, "wechatpay", ["wechatpay"]),
        (ALIPAY_UA, "alipay", ["alipay"]),
        (DESKTOP_UA, None, ["wechatpay", "alipay", "unionpay", "wallet"]),
    ],
)
def test_an_in_app_browser_is_offered_its_own_wallet_only(
    user_agent: str, wallet: str | None, methods: list[str]
) -> None:
    assert app_wallet(user_agent) == wallet
    assert offered(["wechatpay", "alipay", "unionpay", "wallet"], user_agent) == methods
    assert offered(["unionpay"], WECHAT_UA) == []  # nothing this app can pay: the page says to open a browser
    assert scene_for(user_agent) == ("native_qr" if wallet is None else "jsapi")


def test_a_live_jsapi_payment_is_paid_by_its_apps_bridge_with_the_signed_parameters() -> None:
    wechat = {
        "appId": "wx1",
        "timeStamp": "1700000000",
        "nonceStr": "n",
        "package": "prepay_id=wx2",
        "signType": "RSA",
        "paySign": "c2ln",
    }
    action = {"type": "jsapi", "jsapi_params": wechat, "channel_data": {}}
    assert _bridge({"method": "wechatpay"}, action) == {"app": "wechat", "params": wechat}
    alipay = {"type": "jsapi", "jsapi_params": {"tradeNO": "2026120622001"}, "channel_data": {}}
    assert _bridge({"method": "alipay"}, alipay) == {"app": "alipay", "params": {"tradeNO": "2026120622001"}}
    assert _bridge({"method": "wechatpay"}, {"type": "qr_code", "qr_code": "weixin://x"}) is None
    assert _bridge({"method": "unionpay"}, action) is None  # no app bridge of its own


def test_the_poster_is_a_standalone_svg_sized_for_print_with_hostile_text_escaped() -> None:
    view = {
        "url": "https://pay.example/pay/pl_x",
        "merchant_name": "<script>alert(1)</script> & 停车场",
        "description": "停车缴费" * 20,
        "amount_minor": 1_500,
        "currency": "CNY",
    }
    for size, width, height in (("a6", "105mm", "148mm"), ("a4", "210mm", "297mm")):
        svg = poster_svg(view, size=size, gettext=lambda m: m, money=lambda minor, currency: f"¥{minor / 100:.2f}")
        root = xml.dom.minidom.parseString(svg).documentElement
        assert root is not None
        assert (root.getAttribute("width"), root.getAttribute("height")) == (width, height)
        assert "<script" not in svg and "¥15.00" in svg and "href" not in svg
        assert len(root.getElementsByTagName("svg")) == 1  # the QR, nested


def test_the_poster_names_only_the_methods_the_link_offers() -> None:
    view = {
        "url": "https://pay.example/pay/pl_x",
        "merchant_name": "停车场",
        "description": "停车缴费",
        "amount_minor": None,
        "currency": "CNY",
        "methods": ["alipay", "wechatpay", "someday_pay"],
    }
    svg = poster_svg(view, size="a6", gettext=lambda m: m, money=lambda minor, currency: "")
    assert "Alipay · WeChat Pay" in svg
    assert "UnionPay" not in svg and "wallet" not in svg.lower() and "someday_pay" not in svg
