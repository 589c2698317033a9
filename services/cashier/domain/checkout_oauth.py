"""The hosted checkout inside the WeChat / Alipay apps: the OAuth `state` that binds a web authorisation to one
checkout page (pure rules, no I/O; the flow is flows/checkout_oauth.py, the sequence docs/checkout.md).

The page sends the payer to the channel's authorize URL with `state`; the channel sends the payer back with a
`code` and the same `state`; the cashier redeems the code only for a state it signed for **this page token and
this channel**, not expired. The state is alphanumeric (WeChat allows only `[A-Za-z0-9]`, ≤ 128 bytes): 10 digits
of expiry (unix seconds), 16 hex of nonce, 40 hex of HMAC-SHA256 (160 bits) under the cashier's
`internal_token_secret` over `token|channel|expiry|nonce`. Single use: the nonce names the one payment the state
may start (its request id, `request_id_of`), so the same state again answers that payment while it is live and is
refused once it ended; the channel's code is single use as well.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from libs.common.errors import ErrorSpec, Problem

CHECKOUT_OAUTH_STATE_INVALID = ErrorSpec(
    "checkout_oauth_state_invalid", 422, "The authorisation is not for this checkout page, expired or already used"
)
CHECKOUT_OAUTH_CODE_INVALID = ErrorSpec(
    "checkout_oauth_code_invalid", 422, "The channel refused the authorisation code (expired or used): authorise again"
)
CHECKOUT_OAUTH_NOT_CONFIGURED = ErrorSpec(
    "checkout_oauth_not_configured", 422, "The merchant's channel configuration cannot authorise payers in the app"
)
ERRORS = (CHECKOUT_OAUTH_STATE_INVALID, CHECKOUT_OAUTH_CODE_INVALID, CHECKOUT_OAUTH_NOT_CONFIGURED)

STATE_SECONDS = 600  # the payer authorises in seconds; a state older than this is refused
OAUTH_CHANNELS = ("wechatpay", "alipay")  # the apps whose in-app browser pays by JSAPI
_STATE = re.compile(r"^([0-9]{10})([0-9a-f]{16})([0-9a-f]{40})$")


def _mac(secret: str, token: str, channel: str, expires: str, nonce: str) -> str:
    message = f"juhe checkout oauth|{token}|{channel}|{expires}|{nonce}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:40]


def sign_state(secret: str, *, token: str, channel: str, now_unix: int, nonce: str | None = None) -> str:
    """A fresh state for `channel` on the page `token` (a new nonce each page load)."""
    expires = f"{now_unix + STATE_SECONDS:010d}"
    nonce = nonce or secrets.token_hex(8)
    return expires + nonce + _mac(secret, token, channel, expires, nonce)


def verify_state(secret: str, state: str, *, token: str, channel: str, now_unix: int) -> str:
    """The state's nonce, when it was signed for this page and channel and has not expired; else 422."""
    match = _STATE.fullmatch(state)
    if match is None:
        raise Problem(CHECKOUT_OAUTH_STATE_INVALID, "malformed state")
    expires, nonce, mac = match.groups()
    if not hmac.compare_digest(mac, _mac(secret, token, channel, expires, nonce)):
        raise Problem(CHECKOUT_OAUTH_STATE_INVALID, "the state was not issued for this page and channel")
    if int(expires) <= now_unix:
        raise Problem(CHECKOUT_OAUTH_STATE_INVALID, "the state has expired: authorise again")
    return nonce


def request_id_of(nonce: str) -> str:
    """The page payment request id a state may start (one per state)."""
    return f"oauth_{nonce}"
