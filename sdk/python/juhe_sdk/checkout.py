"""Verifying the hosted checkout's return: the parameters Juhe adds to your `return_url` once a session is paid.

Scheme (docs/checkout.md): the query carries `checkout_session_id`, `merchant_order_no`, `status`,
`amount_minor`, `currency`, `payment_id`, `t` (unix seconds) and `sig` = hex HMAC-SHA256 under your webhook
secret of the other Juhe parameters as `key=value` pairs sorted by key and joined by `&` (values as they are,
not URL-encoded). Parameters your own `return_url` already had are not signed and not checked.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNED_PARAMETERS = (
    "amount_minor",
    "checkout_session_id",
    "currency",
    "merchant_order_no",
    "payment_id",
    "status",
    "t",
)
DEFAULT_TOLERANCE_SECONDS = 300


def verify_checkout_return(
    params: Mapping[str, str],
    secret: str,
    *,
    now: int | None = None,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """True when the return parameters are Juhe's, unchanged and recent. Still confirm the order's state by
    the webhook or `GET /v1/checkout/sessions/{id}` before shipping: a payer can open an old return link."""
    if any(name not in params for name in (*SIGNED_PARAMETERS, "sig")):
        return False
    try:
        issued = int(params["t"])
    except ValueError:
        return False
    if abs((int(time.time()) if now is None else now) - issued) > tolerance_seconds:
        return False
    canonical = "&".join(f"{name}={params[name]}" for name in SIGNED_PARAMETERS)
    expected = hmac.new(secret.encode("utf-8"), canonical.encode("utf-8"), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, params["sig"])
