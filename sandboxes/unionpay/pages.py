"""The browser pages: the card consume page (card number, expiry, CVN2, phone, SMS code) and the
result page that POSTs the signed result to the merchant's frontUrl.

Plain HTML forms, so a person can click through a demo and a test (or Chromium) can fill them in.
"""

from __future__ import annotations

from html import escape
from typing import Any

from sandboxes.unionpay.sandbox import SMS_CODE, TEST_CARDS

_STYLE = (
    "body{font-family:sans-serif;max-width:30rem;margin:3rem auto;color:#222}.amount{font-size:2rem;"
    "color:#d7000f}label{display:block;margin:.6rem 0}input{font-size:1rem;padding:.3rem;width:100%}"
    "button{font-size:1rem;padding:.5rem 1.5rem;margin-top:1rem}.error{color:#d7000f}"
)


def _page(title: str, body: str, *, onload: str = "") -> str:
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body{onload}>{body}</body></html>"
    )


def consume_page(txn: dict[str, Any], error: str | None = None) -> str:
    tn = escape(txn["tn"])
    cards = "".join(f"<li><code>{escape(no)}</code> {escape(card.outcome)}</li>" for no, card in TEST_CARDS.items())
    err = f'<p class="error" id="error">{escape(error)}</p>' if error else ""
    body = (
        "<h1>银联在线支付 UnionPay sandbox</h1>"
        f'<p class="amount">¥{txn["amount"] // 100}.{txn["amount"] % 100:02d}</p>'
        f'<p>商户 <span id="merId">{escape(txn["mer_id"])}</span> 订单 '
        f'<span id="orderId">{escape(txn["order_id"])}</span></p>{err}'
        f'<form method="post" action="/pay/consume/{tn}">'
        '<label>卡号 Card number <input name="card_no" id="card_no" autocomplete="off" required></label>'
        '<label>有效期 Expiry (MMYY) <input name="expiry" id="expiry" maxlength="4" required></label>'
        '<label>CVN2 <input name="cvn2" id="cvn2" maxlength="3" required></label>'
        '<label>手机号 Phone <input name="phone" id="phone" value="13552535506" required></label>'
        f'<label>短信验证码 SMS code (test: {SMS_CODE}) <input name="sms_code" id="sms_code" required></label>'
        '<button type="submit" id="pay">确认付款 Pay</button></form>'
        f"<details><summary>Test cards</summary><ul>{cards}</ul></details>"
    )
    return _page("UnionPay sandbox", body)


def result_page(txn: dict[str, Any], front_url: str | None, fields: dict[str, str]) -> str:
    """The outcome, and a form that auto-POSTs the signed result fields to the merchant's frontUrl."""
    status = escape(txn["status"])
    form = ""
    if front_url:
        inputs = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items())
        form = (
            f'<form method="post" action="{escape(front_url)}" id="front">{inputs}'
            '<button type="submit">返回商户 Back to merchant</button></form>'
        )
    body = f'<h1>银联在线支付</h1><p>订单 {escape(txn["order_id"])}: <span id="status">{status}</span></p>{form}'
    return _page("UnionPay sandbox result", body, onload=' onload="document.forms[0].submit()"' if form else "")


def error_page(message: str) -> str:
    return _page("UnionPay sandbox error", f'<h1>错误 Error</h1><p id="error">{escape(message)}</p>')
