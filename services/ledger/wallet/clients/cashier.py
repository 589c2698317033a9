"""The ledger's calls to the cashier (docs/contracts.md §4, wallet top-ups): create and read `wallet_topup`
payments, and ask whether the cashier knows a top-up refund the ledger holds (the reconciler's orphaned holds).

Authenticated as the service identity `ledger` acting for the platform's collecting merchant, with a
short-lived token signed by the shared internal secret (the same token the gateway forwards), so the
cashier scopes the payment to that merchant and allows the `wallet_topup` purpose only from us.

A client per call (these calls are rare: a top-up, the reconciler's doubts) from `libs.common.http.service_client`,
as every service's client: the process's one TLS context (building one is ~26 ms of CPU, docs/performance.md,
"Fourth pass") and the trace header on every request.
"""

from __future__ import annotations

from typing import Any

import httpx

from libs.common.errors import ErrorSpec, Problem
from libs.common.http import service_client
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from services.ledger.config import Settings
from services.ledger.wallet.domain import errors
from services.ledger.wallet.domain.errors import WalletError

TOP_UP_DESCRIPTION = "钱包充值 wallet top-up"


def _configured(settings: Settings) -> tuple[str, str]:
    if not settings.cashier_url or not settings.wallet_topup_merchant_id:
        raise WalletError(errors.TOP_UP_UNAVAILABLE, "cashier_url and wallet_topup_merchant_id are not set")
    return settings.cashier_url.rstrip("/"), settings.wallet_topup_merchant_id


def _headers(settings: Settings, merchant_id: str) -> dict[str, str]:
    token = mint_identity_token(
        settings.internal_token_secret.get_secret_value(),
        key_id="ledger",
        service="ledger",
        merchant_id=merchant_id,
    )
    return {IDENTITY_HEADER: token}


def _answer(r: httpx.Response) -> dict[str, Any]:
    """2xx → the payment; a 4xx problem → the same status and code to our caller (nothing was created);
    5xx → 503 cashier_unavailable (retry with the same key)."""
    if r.is_success:
        return dict(r.json())
    if 400 <= r.status_code < 500:
        try:
            body = r.json()
        except ValueError:
            body = {}
        code = str(body.get("code") or "cashier_refused")
        spec = ErrorSpec(code, r.status_code, str(body.get("title") or "The cashier refused the top-up payment"))
        raise Problem(spec, str(body.get("detail") or r.text[:500]))
    raise WalletError(errors.CASHIER_UNAVAILABLE, f"cashier answered {r.status_code}")


async def create_top_up_payment(settings: Settings, body: dict[str, Any]) -> dict[str, Any]:
    """`POST /v1/payments` for the collecting merchant; the same body again answers the same payment."""
    base, merchant_id = _configured(settings)
    try:
        async with service_client(base, timeout_seconds=settings.cashier_timeout_seconds) as client:
            r = await client.post("/v1/payments", json=body, headers=_headers(settings, merchant_id))
    except httpx.HTTPError as e:
        raise WalletError(errors.CASHIER_UNAVAILABLE, f"cashier unreachable: {type(e).__name__}") from None
    return _answer(r)


async def read_payment(settings: Settings, merchant_id: str, payment_id: str) -> dict[str, Any] | None:
    """The cashier's current view of a top-up payment; None when the cashier cannot be asked now."""
    if not settings.cashier_url:
        return None
    try:
        async with service_client(settings.cashier_url, timeout_seconds=settings.cashier_timeout_seconds) as client:
            r = await client.get(f"/v1/payments/{payment_id}", headers=_headers(settings, merchant_id))
    except httpx.HTTPError:
        return None
    return dict(r.json()) if r.is_success else None


async def refund_known(settings: Settings, refund_id: str) -> bool | None:
    """Whether the cashier recorded refund `refund_id` of the collecting merchant: True (it did), False (404
    `refund_not_found`: it never committed it), None when it cannot tell now (not configured, unreachable, any
    other answer), so nothing is decided on a doubt."""
    if not settings.cashier_url or not settings.wallet_topup_merchant_id:
        return None
    merchant_id = settings.wallet_topup_merchant_id
    try:
        async with service_client(settings.cashier_url, timeout_seconds=settings.cashier_timeout_seconds) as client:
            r = await client.get(f"/v1/refunds/{refund_id}", headers=_headers(settings, merchant_id))
    except httpx.HTTPError:
        return None
    if r.status_code == 200:
        return True
    if r.status_code == 404:
        try:
            code = r.json().get("code")
        except ValueError:
            return None
        return False if code == "refund_not_found" else None
    return None
