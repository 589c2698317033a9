"""WeChat web authorisation (公众号网页授权, `snsapi_base`): the openid a JSAPI payment needs.

The payer's page is sent to WeChat's authorize URL (`authorize_url`), WeChat sends the payer back to
`redirect_uri?code=…&state=…`, and the cashier — never the browser, which must not hold the AppSecret —
redeems the code: `GET /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code` →
`{access_token, expires_in, refresh_token, openid, scope}`. Failures are HTTP 200 with `{errcode, errmsg}`:
40029 invalid code, 40163 code already used (codes live 5 minutes, once), 40125 wrong AppSecret; the replies are
not signed (WeChat does not sign them: TLS to api.weixin.qq.com is the trust). The appid is the one the payer's
client works in (`payer_appid`: sub_appid in partner mode), whose AppSecret the config holds.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

import httpx

from services.cashier.connectors.base import ChannelError, ChannelUnavailable
from services.cashier.connectors.wechatpay.models import PRODUCTION_BASE_URL, WechatPayConfig

PRODUCTION_AUTHORIZE_BASE_URL = "https://open.weixin.qq.com"
PRODUCTION_API_BASE_URL = "https://api.weixin.qq.com"
AUTHORIZE_PATH = "/connect/oauth2/authorize"
ACCESS_TOKEN_PATH = "/sns/oauth2/access_token"
CODE_ERRORS = frozenset({40029, 40163})  # invalid code, code been used: the payer must authorise again
CONFIG_ERRORS = frozenset({40013, 40125})  # invalid appid, invalid AppSecret: the merchant's configuration


def _host(config: WechatPayConfig, configured: str | None, production: str) -> str:
    """A sandbox serves WeChat's every host on its one origin (`base_url`); production has three."""
    if configured:
        return configured.rstrip("/")
    return production if config.base_url.rstrip("/") == PRODUCTION_BASE_URL else config.base_url.rstrip("/")


def authorize_url(config: WechatPayConfig, *, redirect_uri: str, state: str) -> str:
    """Where the payer's WeChat browser goes to be authorised silently (`snsapi_base`): WeChat's documented form,
    parameters in this order, `redirect_uri` URL-encoded, `#wechat_redirect` at the end."""
    base = _host(config, config.oauth_authorize_base_url, PRODUCTION_AUTHORIZE_BASE_URL)
    params = {
        "appid": config.payer_appid,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": "snsapi_base",
        "state": state,
    }
    query = urlencode(params, quote_via=quote, safe="")
    return f"{base}{AUTHORIZE_PATH}?{query}#wechat_redirect"


async def openid_for_code(config: WechatPayConfig, code: str, client: httpx.AsyncClient) -> str:
    """Redeem the code with the appid's AppSecret. `ChannelError` (`INVALID_CODE`, or `CONFIG_ERROR` for the
    merchant's credentials) when WeChat refuses; `ChannelUnavailable` when it does not answer usefully."""
    if not config.app_secret:
        raise ChannelError("CONFIG_ERROR", "the wechatpay configuration has no app_secret for web authorisation")
    base = _host(config, config.oauth_api_base_url, PRODUCTION_API_BASE_URL)
    params = {
        "appid": config.payer_appid,
        "secret": config.app_secret,
        "code": code,
        "grant_type": "authorization_code",
    }
    try:
        response = await client.get(f"{base}{ACCESS_TOKEN_PATH}", params=params)
        answer = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ChannelUnavailable(f"wechat oauth2/access_token: {type(exc).__name__}") from exc
    if response.status_code != 200 or not isinstance(answer, dict):
        raise ChannelUnavailable(f"wechat oauth2/access_token: HTTP {response.status_code}")
    if answer.get("openid"):
        return str(answer["openid"])
    errcode = answer.get("errcode")
    if errcode in CODE_ERRORS:
        raise ChannelError("INVALID_CODE", str(answer.get("errmsg") or "invalid code"))
    if errcode in CONFIG_ERRORS:
        raise ChannelError("CONFIG_ERROR", str(answer.get("errmsg") or "invalid appid or secret"))
    raise ChannelUnavailable(f"wechat oauth2/access_token: errcode {errcode}")
