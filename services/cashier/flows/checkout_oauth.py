"""The hosted checkout inside the WeChat / Alipay apps (JSAPI): the channel's web authorisation for the payer.

1. The page view for scene `jsapi` carries, per app wallet offered, the channel's authorize URL (`authorize_links`):
   app id from the merchant's channel configuration, authorize host from it too (a sandbox's origin in test),
   `redirect_uri` = `<pages origin>/checkout/{token}/oauth/{channel}`, `state` signed for this page and channel
   (domain/checkout_oauth.py).
2. The channel sends the payer back with a `code`; the page starts the payment with `payer.oauth_code` and
   `payer.oauth_state`. Here (`oauth_payer`) the state is checked and the code is redeemed **by the cashier**, with
   the merchant's credentials (WeChat: `/sns/oauth2/access_token` with the AppSecret; Alipay:
   `alipay.system.oauth.token` signed with the app key), for the payer's openid / buyer_id. A page or a browser
   never names the payer itself: the page route drops `openid` / `buyer_id` from its body.
3. The payment is an ordinary JSAPI payment (WeChat `/v3/pay/transactions/jsapi`, Alipay `alipay.trade.create`)
   whose `payer_action` is the signed bridge parameters (`type: jsapi`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from libs.common.errors import Problem
from libs.common.logging import get_logger
from services.cashier.connectors.alipay import oauth as alipay_oauth
from services.cashier.connectors.base import ChannelError, ChannelUnavailable
from services.cashier.connectors.wechatpay import oauth as wechat_oauth
from services.cashier.domain import checkout_oauth as rules
from services.cashier.domain.errors import CHANNEL_UNAVAILABLE
from services.cashier.flows.context import Cashier

log = get_logger("juhe.cashier.checkout")


def _secret(cashier: Cashier) -> str:
    return cashier.settings.internal_token_secret.get_secret_value()


def _now(cashier: Cashier) -> int:
    return int(cashier.clock().timestamp())


async def authorize_links(
    cashier: Cashier, row: Any, token: str, methods: Sequence[str], *, pages_origin: str
) -> dict[str, str]:
    """The authorize URL of each app wallet among `methods` whose configuration can redeem a code (WeChat needs
    the appid's AppSecret); a fresh state each time. A wallet left out is paid on its H5 page instead."""
    links: dict[str, str] = {}
    for channel in (m for m in methods if m in rules.OAUTH_CHANNELS):
        connector: Any = await cashier.connectors.get(row.merchant_id, channel, livemode=row.livemode)
        redirect_uri = f"{pages_origin}/checkout/{token}/oauth/{channel}"
        state = rules.sign_state(_secret(cashier), token=token, channel=channel, now_unix=_now(cashier))
        if channel == "wechatpay" and connector.config.app_secret:
            links[channel] = wechat_oauth.authorize_url(connector.config, redirect_uri=redirect_uri, state=state)
        elif channel == "alipay":
            links[channel] = alipay_oauth.authorize_url(connector.config, redirect_uri=redirect_uri, state=state)
    return links


def oauth_payer(
    cashier: Cashier, token: str, *, channel: str, code: str, state: str
) -> tuple[str, Callable[[Any], Awaitable[dict[str, Any]]]]:
    """Check the state (this page, this channel, not expired) and answer the one request id it may start, with
    the step that redeems the code — run only when a new payment is started (a reload answers the live one)."""
    if channel not in rules.OAUTH_CHANNELS:
        raise Problem(rules.CHECKOUT_OAUTH_STATE_INVALID, f"{channel} has no in-app authorisation")
    nonce = rules.verify_state(_secret(cashier), state, token=token, channel=channel, now_unix=_now(cashier))
    request_id = rules.request_id_of(nonce)

    async def redeem(row: Any) -> dict[str, Any]:
        if row.payment_request_id == request_id:  # this state already started a payment, which has ended
            raise Problem(rules.CHECKOUT_OAUTH_STATE_INVALID, "this authorisation was used: authorise again")
        connector: Any = await cashier.connectors.get(row.merchant_id, channel, livemode=row.livemode)
        try:
            if channel == "wechatpay":
                return {"openid": await connector.oauth_openid(code)}
            return {"buyer_id": await connector.oauth_user_id(code)}
        except ChannelError as exc:
            log.info("checkout oauth code refused", channel=channel, code=exc.code)
            if exc.code == "CONFIG_ERROR":
                raise Problem(rules.CHECKOUT_OAUTH_NOT_CONFIGURED, exc.message[:200]) from exc
            raise Problem(rules.CHECKOUT_OAUTH_CODE_INVALID, f"{channel} refused the code ({exc.code})") from exc
        except ChannelUnavailable as exc:
            raise Problem(CHANNEL_UNAVAILABLE, f"{channel} authorisation did not answer") from exc

    return request_id, redeem
