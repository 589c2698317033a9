"""Alipay web authorisation (`auth_base`): the buyer_id a JSAPI (`alipay.trade.create`) payment needs.

The payer's page is sent to `https://openauth.alipay.com/oauth2/publicAppAuthorize.htm?app_id&scope=auth_base&
redirect_uri&state` (`authorize_url`); Alipay sends the payer back to `redirect_uri?app_id&source&scope&auth_code&
state`, and the cashier — never the browser — redeems the `auth_code` with the app's private key by
`alipay.system.oauth.token` (`AlipayConnector.oauth_user_id`: a signed call, a signed answer) for the `user_id`
(2088…). Codes are single use.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode, urlsplit

from services.cashier.connectors.alipay.models import PRODUCTION_GATEWAY_URL, AlipayConfig

PRODUCTION_AUTHORIZE_URL = "https://openauth.alipay.com/oauth2/publicAppAuthorize.htm"
AUTHORIZE_PATH = "/oauth2/publicAppAuthorize.htm"


def authorize_url(config: AlipayConfig, *, redirect_uri: str, state: str) -> str:
    """Where the payer's Alipay browser goes to be authorised silently (`auth_base`); a sandbox gateway's origin
    serves the authorize page too."""
    if config.oauth_authorize_url:
        base = config.oauth_authorize_url
    elif config.gateway_url == PRODUCTION_GATEWAY_URL:
        base = PRODUCTION_AUTHORIZE_URL
    else:
        parts = urlsplit(config.gateway_url)
        base = f"{parts.scheme}://{parts.netloc}{AUTHORIZE_PATH}"
    query = urlencode(
        {"app_id": config.app_id, "scope": "auth_base", "redirect_uri": redirect_uri, "state": state},
        quote_via=quote,
        safe="",
    )
    return f"{base}?{query}"
