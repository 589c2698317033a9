"""Where a JSAPI / mini-program payer's `openid` comes from (api.weixin.qq.com, not the pay API).

- Official-account web pages (公众号网页授权): the user is sent to WeChat's authorize page and comes
  back with `code`; `GET /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code`
  → `{access_token, expires_in, refresh_token, openid, scope}`.
- Mini-programs: `wx.login()` gives `code`; `GET /sns/jscode2session?appid&secret&js_code&
  grant_type=authorization_code` → `{openid, session_key}`.
Errors are `{"errcode": 40029, "errmsg": "invalid code"}` (HTTP 200, as WeChat answers), 40125 for a
wrong secret. Codes are single use and live 5 minutes. The sandbox plays the user:
`POST /control/oauth-codes {"appid", "openid"?}` → `{"code", "openid"}`; each appid's secret is
returned by merchant registration (`app_secrets`). These replies are not signed (WeChat does not).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from sandboxes.wechatpay import crypto
from sandboxes.wechatpay.sandbox import ControlError, Sandbox

CODES, SECRETS = "oauth_codes", "app_secrets"
CODE_TTL_SECONDS = 300
INVALID_CODE = {"errcode": 40029, "errmsg": "invalid code"}
INVALID_SECRET = {"errcode": 40125, "errmsg": "invalid appsecret"}


class OauthCodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    appid: str
    openid: str | None = None


def app_secret(sandbox: Sandbox, appid: str) -> str:
    """The AppSecret of an appid, created on first use (merchant registration hands it out)."""
    entry = sandbox.store.get(SECRETS, appid)
    if entry is None:
        entry = {"secret": secrets.token_hex(16)}
        sandbox.store.insert_if_absent(SECRETS, appid, entry)
        entry = sandbox.store.get(SECRETS, appid) or entry
    return str(entry["secret"])


def install_routes(app: FastAPI, sandbox: Sandbox) -> None:
    def redeem(appid: str, secret: str, code: str, grant_type: str) -> dict[str, Any] | JSONResponse:
        if grant_type != "authorization_code":
            return JSONResponse({"errcode": 40002, "errmsg": "invalid grant_type"})
        if sandbox.store.get(SECRETS, appid) is None or app_secret(sandbox, appid) != secret:
            return JSONResponse(INVALID_SECRET)
        entry = sandbox.store.get(CODES, code)
        if entry is None or entry["used"] or entry["appid"] != appid or entry["expires_unix"] < time.time():
            return JSONResponse(INVALID_CODE)
        sandbox.store.put(CODES, code, {**entry, "used": True})
        return {"openid": entry["openid"]}

    @app.get("/sns/oauth2/access_token", response_model=None)
    async def web_access_token(
        appid: str = "", secret: str = "", code: str = "", grant_type: str = ""
    ) -> dict[str, Any] | JSONResponse:
        found = redeem(appid, secret, code, grant_type)
        if isinstance(found, JSONResponse):
            return found
        return {
            "access_token": secrets.token_urlsafe(48),
            "expires_in": 7200,
            "refresh_token": secrets.token_urlsafe(48),
            "openid": found["openid"],
            "scope": "snsapi_base",
        }

    @app.get("/sns/jscode2session", response_model=None)
    async def mini_program_session(
        appid: str = "", secret: str = "", js_code: str = "", grant_type: str = ""
    ) -> dict[str, Any] | JSONResponse:
        found = redeem(appid, secret, js_code, grant_type)
        if isinstance(found, JSONResponse):
            return found
        return {"openid": found["openid"], "session_key": secrets.token_urlsafe(16)}

    @app.post("/control/oauth-codes")
    async def oauth_code(request: OauthCodeRequest) -> dict[str, str]:
        """A user authorises the merchant's page / opens its mini-program: the code handed over."""
        if not any(request.appid in m["appids"] for m in sandbox.store.list("merchants")):
            raise ControlError(404, f"appid {request.appid} is not registered")
        code = secrets.token_hex(16)
        openid = request.openid or "o" + crypto.nonce_str(27)
        sandbox.store.put(
            CODES,
            code,
            {"appid": request.appid, "openid": openid, "used": False, "expires_unix": time.time() + CODE_TTL_SECONDS},
        )
        return {"code": code, "openid": openid}
