"""The checkout page's pure parts: which flow a device gets, and the QR as inline SVG without script."""

from __future__ import annotations

from web.pages.checkout import qr_svg, scene_for

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"
WECHAT = IPHONE + " MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN"
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def test_desktop_gets_a_qr_and_phones_the_channels_page() -> None:
    assert scene_for(DESKTOP) == "native_qr"
    assert scene_for(IPHONE) == "h5"
    assert scene_for(WECHAT) == "h5"  # until the JSAPI flow: the H5 page
    assert scene_for("") == "native_qr"


def test_the_qr_is_small_inline_svg_without_script() -> None:
    svg = qr_svg("weixin://wxpay/bizpayurl?pr=abcdefghij")
    assert svg.startswith("<svg") and "<script" not in svg and "href" not in svg
    assert len(svg) < 10_000
