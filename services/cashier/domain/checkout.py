"""Hosted checkout sessions: states, expiry bounds, page tokens and the signed return to the merchant.

Pure rules, no I/O. A session is what a merchant creates (`POST /v1/checkout/sessions`); the payer pays it on
the hosted page `/checkout/{token}` with one payment at a time (a second method only after the first one
ended without money); the first payment that succeeds completes the session, and nothing else can.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta

from libs.common.errors import ErrorSpec, Problem

# Error catalogue of the checkout (the rest of the cashier's is domain/errors.py).
CHECKOUT_SESSION_NOT_FOUND = ErrorSpec("checkout_session_not_found", 404, "No such checkout session")
CHECKOUT_SESSION_NOT_OPEN = ErrorSpec(
    "checkout_session_not_open", 409, "The checkout session is completed or expired; nothing can be paid on it"
)
CHECKOUT_PAYMENT_IN_PROGRESS = ErrorSpec(
    "checkout_payment_in_progress",
    409,
    "Another payment of this session is being set up; retry shortly",
    retryable=True,
)
CHECKOUT_METHOD_NOT_AVAILABLE = ErrorSpec(
    "checkout_method_not_available", 422, "This payment method is not offered for this checkout session"
)
CHECKOUT_EXPIRY_OUT_OF_RANGE = ErrorSpec(
    "checkout_expiry_out_of_range", 422, "expires_in_seconds is outside what the channels allow"
)

EXPIRY_DEFAULT_SECONDS = 15 * 60
EXPIRY_MIN_SECONDS = 60
EXPIRY_MAX_SECONDS = 24 * 3600  # WeChat Pay and Alipay both keep an unpaid order at most a day
LINE_ITEMS_MAX = 50
# A page payment being set up (claimed, payment not yet recorded) for longer than this was abandoned by a
# process that died: the next request may claim the next slot.
CLAIM_STALE_SECONDS = 30
RETURN_SIGNATURE_TOLERANCE_SECONDS = 300
FRAME_ORIGINS_MAX = 20  # origins a merchant may embed the checkout on (juhe.js)

# Events on the cashier's `cashier.payments` topic (every consumer there filters by type).
CHECKOUT_SESSION_COMPLETED = "checkout.session.completed"
CHECKOUT_SESSION_EXPIRED = "checkout.session.expired"

TOKEN_LABEL = b"juhe checkout page token v1:"


class SessionStatus(enum.StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    EXPIRED = "expired"


# The page's payment methods are the channel (connector) names; each offers these scenes on the page.
# `wallet` is paid only by a signed-in user (its own endpoint); the others by anyone holding the page token.
PAGE_SCENES: dict[str, frozenset[str]] = {
    "wechatpay": frozenset({"native_qr", "h5", "jsapi"}),
    "alipay": frozenset({"native_qr", "h5", "page", "jsapi"}),
    "unionpay": frozenset({"h5", "page"}),
    "ecny": frozenset({"native_qr", "h5"}),
    "wallet": frozenset({"wallet"}),
}

# A desktop page shows QR codes, but UnionPay's desktop product is its web consume page (a form the browser
# posts to UnionPay, docs/protocols/unionpay.md), so on a desktop page UnionPay is paid in scene `page`.
DESKTOP_SCENE_OF_CHANNEL: dict[str, str] = {"unionpay": "page"}


def channel_scene(channel: str, page_scene: str) -> str:
    """The scene a payment with `channel` is made in, for a checkout page shown in `page_scene`."""
    if channel == "wallet":
        return "wallet"
    if page_scene == "native_qr":
        return DESKTOP_SCENE_OF_CHANNEL.get(channel, page_scene)
    return page_scene


def resolve_expiry(now: datetime, requested_seconds: int | None, *, channel_max_seconds: int) -> datetime:
    """The session's deadline: 15 minutes by default, never beyond what every channel keeps an order open."""
    seconds = EXPIRY_DEFAULT_SECONDS if requested_seconds is None else requested_seconds
    upper = min(EXPIRY_MAX_SECONDS, channel_max_seconds)
    if not EXPIRY_MIN_SECONDS <= seconds <= upper:
        raise Problem(
            CHECKOUT_EXPIRY_OUT_OF_RANGE,
            f"expires_in_seconds must be {EXPIRY_MIN_SECONDS}..{upper}",
            min=EXPIRY_MIN_SECONDS,
            max=upper,
        )
    return now + timedelta(seconds=seconds)


def page_token(secret: str, session_id: str) -> str:
    """The page's bearer token: HMAC-SHA256 of the session id under the service secret, 256 bits, URL-safe.

    Derived rather than random so the session's `url` can be answered again (GET, an idempotent replay)
    without storing the token; only its SHA-256 is stored, for the lookup. Unguessable without the secret
    and not the session id, so knowing an id (from a webhook or a log) does not open the page.
    """
    mac = hmac.new(secret.encode("utf-8"), TOKEN_LABEL + session_id.encode("ascii"), hashlib.sha256).digest()
    return "cst_" + base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", errors="surrogatepass")).hexdigest()


def payment_order_no(session_id: str, seq: int) -> str:
    """The merchant order number of the session's n-th payment: unique per merchant, names its session."""
    return f"{session_id}.{seq}"


def return_canonical(params: Mapping[str, str]) -> str:
    """`key=value` pairs sorted by key, joined by `&`, values as they are (not URL-encoded); `sig` left out."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sig")


def sign_return(secret: str, params: Mapping[str, str]) -> str:
    """HMAC-SHA256 (hex) under the merchant's webhook secret of `return_canonical(params)`; params carry `t`."""
    return hmac.new(secret.encode("utf-8"), return_canonical(params).encode("utf-8"), hashlib.sha256).hexdigest()


def verify_return(
    secret: str, params: Mapping[str, str], *, now: int, tolerance_seconds: int = RETURN_SIGNATURE_TOLERANCE_SECONDS
) -> bool:
    """What a merchant runs on its return page (the SDK has the same): signature right and `t` recent."""
    try:
        issued = int(params.get("t", ""))
    except ValueError:
        return False
    if abs(now - issued) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign_return(secret, params), params.get("sig", ""))
