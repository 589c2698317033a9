"""The browser-facing pages of the sandbox: the cashier (Approve / Decline) and error pages.

Plain HTML with no scripts, so a person can click through a demo and a test can drive it with an
HTTP client: the forms POST to `/pay/cashier/<trade_no>/approve|decline`.
"""

from __future__ import annotations

from html import escape
from typing import Any

from sandboxes.alipay.trades import WAIT_BUYER_PAY, yuan

_STYLE = (
    "body{font-family:sans-serif;max-width:32rem;margin:3rem auto;color:#222}"
    ".amount{font-size:2rem;color:#1677ff}button{font-size:1rem;padding:.5rem 1.5rem;margin-right:1rem}"
    "dt{color:#888}dd{margin:0 0 .5rem 0}"
)


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def cashier_page(trade: dict[str, Any]) -> str:
    """One trade with Approve/Decline buttons while it waits for the buyer; its state otherwise."""
    trade_no = escape(trade["trade_no"])
    rows = "".join(
        f'<dt>{escape(label)}</dt><dd id="{key}">{escape(str(value))}</dd>'
        for key, label, value in (
            ("subject", "商品", trade["subject"]),
            ("out_trade_no", "商户订单号", trade["out_trade_no"]),
            ("trade_no", "支付宝交易号", trade["trade_no"]),
            ("status", "状态", trade["status"]),
        )
    )
    actions = ""
    if trade["status"] == WAIT_BUYER_PAY:
        actions = (
            f'<form method="post" action="/pay/cashier/{trade_no}/approve" style="display:inline">'
            '<button type="submit" name="action" value="approve">Approve 确认付款</button></form>'
            f'<form method="post" action="/pay/cashier/{trade_no}/decline" style="display:inline">'
            '<button type="submit" name="action" value="decline">Decline 取消</button></form>'
        )
    body = (
        "<h1>支付宝 Alipay sandbox cashier</h1>"
        f'<p class="amount">¥{yuan(trade["total_fen"])}</p><dl>{rows}</dl>{actions}'
    )
    return _page("Alipay sandbox cashier", body)


def result_page(trade: dict[str, Any], message: str, return_url: str | None = None) -> str:
    link = f'<p><a href="{escape(return_url)}">返回商户 Back to merchant</a></p>' if return_url else ""
    body = f"<h1>{escape(message)}</h1><p>{escape(trade['out_trade_no'])}: {escape(trade['status'])}</p>{link}"
    return _page(message, body)


def error_page(code: str, sub_code: str, sub_msg: str) -> str:
    body = (
        "<h1>支付宝 Alipay sandbox: 错误 Error</h1>"
        f'<p>code: <span id="code">{escape(code)}</span></p>'
        f'<p>sub_code: <span id="sub_code">{escape(sub_code)}</span></p>'
        f"<p>{escape(sub_msg)}</p>"
    )
    return _page("Alipay sandbox error", body)
