"""Marketing, called for a signed-in user of My Wallet / the hosted checkout: the coupons a payment could use."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from gateway.domain.access import Principal
from gateway.domain.errors import UPSTREAM_UNAVAILABLE
from libs.common.errors import VALIDATION_FAILED, Problem
from libs.common.http import json_object, request_with_retries
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token

COUPONS_IDENTITY_KEY_ID = "gateway-me"  # the gateway calling marketing for a signed-in user (a service identity)
COUPONS_PATH = "/v1/internal/marketing/users/{user_id}/applicable-coupons"


async def applicable_coupons(
    marketing: httpx.AsyncClient, *, internal_token_secret: str, user: Principal, query: dict[str, str | int]
) -> dict[str, Any]:
    """The signed-in user's coupons a payment could use (merchant, amount, currency, method in `query`), best
    discount first: marketing's internal list, asked as the gateway (a service identity — marketing refuses its
    internal API to user tokens) for the user the token names, never one a page or a query names. What the page
    then shows is an offer only: the cashier locks the chosen coupon against the real payment (its merchant and
    amount) with marketing, so a tampered query lists other coupons but pays nothing less.
    Marketing unreachable or failing → 503 `upstream_unavailable` (retryable); its 4xx problem is passed on."""
    token = mint_identity_token(
        internal_token_secret, key_id=COUPONS_IDENTITY_KEY_ID, service="gateway", ttl_seconds=60
    )
    assert user.kind == "user" and user.user_id is not None
    path = COUPONS_PATH.format(user_id=quote(user.user_id, safe=""))
    try:
        response = await request_with_retries(marketing, "GET", path, params=query, headers={IDENTITY_HEADER: token})
    except httpx.HTTPError as exc:
        raise Problem(UPSTREAM_UNAVAILABLE, f"marketing: {type(exc).__name__}") from exc
    body = json_object(response)
    if response.status_code >= 500 or (response.status_code >= 400 and "code" not in body):
        raise Problem(UPSTREAM_UNAVAILABLE, f"marketing answered HTTP {response.status_code}")
    if response.status_code >= 400:
        raise Problem(VALIDATION_FAILED, str(body.get("detail") or body.get("code"))[:200], upstream=body.get("code"))
    return {"data": list(body.get("data") or []), "has_more": bool(body.get("has_more"))}
