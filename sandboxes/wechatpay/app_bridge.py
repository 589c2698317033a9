"""The WeChat app, as far as a page inside its browser meets it: web authorisation and the JSAPI pay bridge.

- `GET /connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope=snsapi_base&state` (WeChat's
  open.weixin.qq.com, 公众号网页授权): silent `snsapi_base` authorisation — the app sends the user straight back
  to `redirect_uri?code=…&state=…` (a 302; WeChat appends `#wechat_redirect` to the URL it is given, which a
  browser never sends). The code is the one `/sns/oauth2/access_token` redeems (oauth.py: single use, 5 min).
  `openid` (sandbox only) names the user; otherwise each appid's sandbox user is one stable openid.
- `POST /control/app-bridge/wechat/pay` takes what a page passes to `WeixinJSBridge.invoke(
  'getBrandWCPayRequest', …)` — `appId, timeStamp, nonceStr, package (prepay_id=…), signType (RSA), paySign` — and
  does what the app does: finds the order by its prepay_id, checks that `appId` is the order's, **verifies paySign
  over `appId\\ntimeStamp\\nnonceStr\\npackage\\n` with the merchant's registered public key** (so a wrong signature
  fails as in the app), and pays the order as the payer. Answers the bridge's `{"err_msg": …}`:
  `get_brand_wcpay_request:ok` or `get_brand_wcpay_request:fail` (with `reason`, sandbox only).
- `GET /control/app-bridge.js` is the stand-in bridge for a browser test (Playwright `add_init_script`): it defines
  `window.WeixinJSBridge` and `window.AlipayJSBridge`, each handing its call to `window.__juheSandboxBridge(app,
  name, params)`, which the test exposes (`page.expose_function`) and which calls the sandbox's bridge endpoint
  from outside the page (the page's strict CSP lets it fetch nothing from the sandbox's origin).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from sandboxes.common.keys import load_public_key_pem
from sandboxes.wechatpay import crypto
from sandboxes.wechatpay.oauth import CODE_TTL_SECONDS, CODES
from sandboxes.wechatpay.sandbox import ControlError, Sandbox

OK, FAIL = "get_brand_wcpay_request:ok", "get_brand_wcpay_request:fail"

# The stand-in for the apps' bridges, injected before a page's own scripts. Each call goes to a function the test
# exposes (outside the page: the page's CSP lets it reach only its own origin), which asks the sandbox to act as the
# app; its answer is handed to the page's callback as the app's own would be.
APP_BRIDGE_JS = """(function () {
  "use strict";
  function relay(app, name, params, callback) {
    window.__juheSandboxBridge(app, name, params).then(function (answer) { if (callback) { callback(answer); } });
  }
  window.WeixinJSBridge = { invoke: function (name, params, callback) { relay("wechat", name, params, callback); } };
  window.AlipayJSBridge = { call: function (name, params, callback) { relay("alipay", name, params, callback); } };
})();
"""


class BridgePayRequest(BaseModel):
    """What `getBrandWCPayRequest` is given (WeChat's names)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    app_id: str = Field(alias="appId")
    time_stamp: str = Field(alias="timeStamp")
    nonce_str: str = Field(alias="nonceStr")
    package: str
    sign_type: str = Field(alias="signType")
    pay_sign: str = Field(alias="paySign")


def sandbox_openid(appid: str) -> str:
    """The sandbox's one app user per appid: the same openid each time, as WeChat gives one user per appid."""
    return "o" + hashlib.sha256(f"sandbox user:{appid}".encode()).hexdigest()[:27]


def install_routes(app: FastAPI, sandbox: Sandbox) -> None:
    @app.get("/connect/oauth2/authorize", response_model=None)
    async def authorize(
        appid: str = "",
        redirect_uri: str = "",
        response_type: str = "",
        scope: str = "",
        state: str = "",
        openid: str | None = None,
    ) -> RedirectResponse:
        """The user opened the merchant's page in WeChat: silent authorisation, back with a code."""
        if response_type != "code" or scope not in ("snsapi_base", "snsapi_userinfo"):
            raise ControlError(400, "response_type must be code and scope snsapi_base or snsapi_userinfo")
        if not any(appid in m["appids"] for m in sandbox.store.list("merchants")):
            raise ControlError(
                400, f"appid {appid} is not registered (WeChat: 10003 redirect_uri 域名与后台配置不一致)"
            )
        if urlsplit(redirect_uri).scheme not in ("http", "https"):
            raise ControlError(400, "redirect_uri must be an http(s) URL")
        code = secrets.token_hex(16)
        sandbox.store.put(
            CODES,
            code,
            {
                "appid": appid,
                "openid": openid or sandbox_openid(appid),
                "used": False,
                "expires_unix": time.time() + CODE_TTL_SECONDS,
            },
        )
        separator = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(f"{redirect_uri}{separator}{urlencode({'code': code, 'state': state})}", 302)

    @app.get("/control/app-bridge.js")
    async def app_bridge_script() -> PlainTextResponse:
        return PlainTextResponse(APP_BRIDGE_JS, media_type="text/javascript")

    @app.post("/control/app-bridge/wechat/pay")
    async def bridge_pay(request: BridgePayRequest) -> dict[str, Any]:
        """getBrandWCPayRequest as the app runs it: the signature is checked before anything is paid."""
        reason = _refusal(sandbox, request)
        if reason is not None:
            return {"err_msg": FAIL, "reason": reason}
        order = _order_of(sandbox, request.package.removeprefix("prepay_id="))
        assert order is not None
        try:
            sandbox.approve_order(order["out_trade_no"], order["scope"], None, None)
        except ControlError as exc:
            return {"err_msg": FAIL, "reason": exc.message}
        return {"err_msg": OK}


def _order_of(sandbox: Sandbox, prepay_id: str) -> dict[str, Any] | None:
    return next((o for o in sandbox.store.list("orders") if o.get("prepay_id") == prepay_id), None)


def _refusal(sandbox: Sandbox, request: BridgePayRequest) -> str | None:
    """Why the app would refuse these parameters (None: it shows the payment sheet and the payer pays)."""
    if request.sign_type != "RSA" or not request.package.startswith("prepay_id="):
        return "signType must be RSA and package prepay_id=…"
    order = _order_of(sandbox, request.package.removeprefix("prepay_id="))
    if order is None or order.get("kind") != "jsapi":
        return "no JSAPI order has this prepay_id"
    if request.app_id != (order.get("sub_appid") or order.get("appid")):
        return "appId is not the order's"
    merchant = sandbox.store.get("merchants", order["mchid"]) or {"serials": {}}
    message = f"{request.app_id}\n{request.time_stamp}\n{request.nonce_str}\n{request.package}\n".encode()
    if not any(
        crypto.verify(load_public_key_pem(pem), message, request.pay_sign) for pem in merchant["serials"].values()
    ):
        return "paySign does not verify with the merchant's public key"
    return None
