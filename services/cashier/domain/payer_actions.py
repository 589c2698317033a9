"""One `payer_action` shape per type, whatever the channel routing picked.

Connectors store what their channel answered (WeChat Pay's QR is `code_url`, Alipay's `qr_code`; WeChat's JSAPI
parameters are top-level, Alipay's is a `trade_no`; …). A merchant does not choose the channel, so the API shows
one shape per `type`: the one field a payer page needs, and everything channel-specific under `channel_data`
(always an object, maybe empty):

- `qr_code` → `qr_code`: the text to encode as a QR code;
- `redirect` → `url`: the page to send the payer to (GET);
- `form` → `form`: `{action, method, fields}`, a form the payer's browser posts;
- `jsapi` → `jsapi_params`: what the in-app bridge takes (WeChat's `getBrandWCPayRequest` parameters,
  Alipay's `tradePay` `{tradeNO}`);
- `app` → `app_params`: what the channel's app SDK takes (WeChat's pay parameters, Alipay's `order_string`,
  UnionPay's `tn`);
- `wallet_confirm` → `confirm_path`: the Juhe path the wallet payer confirms on;
- `payment_code` → `state`: the scanned code's state (`user_paying`).

The stored action is left as the channel gave it (re-drives compare it); only views normalise.
"""

from __future__ import annotations

from typing import Any

# The one field of each type, and the stored keys it may come from (first present wins).
_MAIN_FIELD: dict[str, tuple[str, tuple[str, ...]]] = {
    "qr_code": ("qr_code", ("qr_code", "code_url")),
    "redirect": ("url", ("url",)),
    "form": ("form", ("form",)),
    "wallet_confirm": ("confirm_path", ("confirm_path",)),
    "payment_code": ("state", ("state",)),
}
# WeChat Pay's JSAPI / mini-program parameters, passed to WeixinJSBridge as they are.
WECHAT_JSAPI_KEYS = ("appId", "timeStamp", "nonceStr", "package", "signType", "paySign")


def normalised_payer_action(action: dict[str, Any] | None) -> dict[str, Any] | None:
    """The API shape of a stored payer action (see the module doc); None stays None."""
    if not action:
        return action
    kind = str(action.get("type", ""))
    rest = {k: v for k, v in action.items() if k != "type"}
    if kind == "jsapi":
        if "trade_no" in rest:  # Alipay: my.tradePay({tradeNO})
            params: dict[str, Any] = {"tradeNO": rest["trade_no"]}
        else:
            params = {k: rest.pop(k) for k in WECHAT_JSAPI_KEYS if k in rest}
        return {"type": kind, "jsapi_params": params, "channel_data": rest}
    if kind == "app":
        return {"type": kind, "app_params": rest, "channel_data": {}}
    main = _MAIN_FIELD.get(kind)
    if main is None:
        return {"type": kind, "channel_data": rest}
    field, sources = main
    value = next((rest.pop(key) for key in sources if key in rest), None)
    for key in sources:
        rest.pop(key, None)
    return {"type": kind, field: value, "channel_data": rest}
