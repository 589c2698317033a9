"""The Alipay app, as far as a page inside its browser meets it: web authorisation and `tradePay`.

- `GET /oauth2/publicAppAuthorize.htm?app_id&scope=auth_base&redirect_uri&state` (Alipay's openauth.alipay.com):
  silent `auth_base` authorisation — the app sends the user straight back to
  `redirect_uri?app_id=…&source=alipay_wallet&scope=auth_base&auth_code=…&state=…` (302). The `auth_code` is the
  one `alipay.system.oauth.token` redeems (payments.py: single use, 10 min). `buyer_id` (sandbox only) names the
  user; otherwise each app_id's sandbox user is one stable `2088…` id.
- `POST /control/app-bridge/alipay/trade-pay {"tradeNO"}` is `AlipayJSBridge.call('tradePay', {tradeNO})` as the
  app runs it: the trade must be an `alipay.trade.create` (JSAPI) trade waiting for its buyer, and the app's user
  must be that buyer (the trade was created for the buyer_id the OAuth gave); it is paid (notified as usual).
  Answers the bridge's `{"resultCode": "9000"}` (paid) or `"4000"` (failed, with `memo`). Unlike WeChat's,
  tradePay carries no signature: Alipay signed the trade when the merchant created it server-side.
The stand-in bridge script a browser test injects is the WeChat sandbox's `GET /control/app-bridge.js` (it defines
both `WeixinJSBridge` and `AlipayJSBridge`).
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI, HTTPException
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from sandboxes.alipay import payments
from sandboxes.alipay.sandbox import Sandbox
from sandboxes.alipay.trades import BizError

PAID, FAILED = "9000", "4000"


class TradePayRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    trade_no: str = Field(alias="tradeNO", min_length=1, max_length=64)


def sandbox_buyer_id(app_id: str) -> str:
    """The sandbox's one app user per app_id: a stable 2088… user id."""
    return "2088" + str(int(hashlib.sha256(f"sandbox user:{app_id}".encode()).hexdigest(), 16))[:12]


def install_routes(app: FastAPI, sandbox: Sandbox) -> None:
    @app.get("/oauth2/publicAppAuthorize.htm", response_model=None)
    async def authorize(
        app_id: str = "", scope: str = "", redirect_uri: str = "", state: str = "", buyer_id: str | None = None
    ) -> RedirectResponse:
        """The user opened the merchant's page in Alipay: silent authorisation, back with an auth_code."""
        if sandbox.app(app_id) is None:
            raise HTTPException(status_code=400, detail="unknown app_id")
        if scope not in ("auth_base", "auth_user"):
            raise HTTPException(status_code=400, detail="scope must be auth_base or auth_user")
        if urlsplit(redirect_uri).scheme not in ("http", "https"):
            raise HTTPException(status_code=400, detail="redirect_uri must be an http(s) URL")
        issued = payments.issue_oauth_code(sandbox.store, sandbox.clock(), app_id, buyer_id or sandbox_buyer_id(app_id))
        query = {
            "app_id": app_id,
            "source": "alipay_wallet",
            "scope": scope,
            "auth_code": issued["auth_code"],
            "state": state,
        }
        separator = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(f"{redirect_uri}{separator}{urlencode(query)}", status_code=302)

    @app.post("/control/app-bridge/alipay/trade-pay")
    async def trade_pay(request: TradePayRequest, buyer_id: str | None = None) -> dict[str, Any]:
        trade = sandbox.trades.find_by_trade_no(request.trade_no)
        if trade is None or trade.get("method") != "alipay.trade.create":
            return {"resultCode": FAILED, "memo": "no JSAPI trade has this tradeNO"}
        user = buyer_id or sandbox_buyer_id(trade["app_id"])
        if trade.get("buyer_id") and trade["buyer_id"] != user:
            return {"resultCode": FAILED, "memo": "the trade is another buyer's"}
        try:
            sandbox.trades.pay(trade)
        except BizError as exc:
            return {"resultCode": FAILED, "memo": exc.sub_msg}
        return {"resultCode": PAID, "memo": "支付成功"}
