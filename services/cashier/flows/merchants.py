"""The cashier's merchant row: its webhook secret comes from the gateway, the one place that issues it.

`POST /v1/platform/merchants` at the gateway returns a `webhook_secret` and keeps it (sealed). The
cashier signs webhooks with its own copy in `merchants.webhook_secret`. Minting a second secret here
(as the cashier once did the first time a merchant's channels were set) meant the returned one never
verified a webhook. So, the first time the cashier hears of a merchant, it asks the gateway
(`GET /internal/v1/merchants/{id}/webhook-secret`, service identity) and stores that secret:

* the gateway knows the merchant → its secret, stored once (idempotent: a repeated or concurrent first
  call stores the same value; the copy is in PostgreSQL, so it survives restarts of either process);
* the gateway answers 404 (a merchant the platform keeps only at the cashier, such as the wallet top-up
  merchant) or no gateway is configured (the cashier run alone in tests) → the cashier mints one;
* the gateway is unreachable or answers 5xx → 503 `service_unavailable` (retryable), nothing written, so
  a retry after recovery still adopts the gateway's secret instead of a minted one.

An explicit `webhook_secret` in the admin `PUT` still sets the copy (the platform's override).
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from sqlalchemy import Row

from libs.common.errors import SERVICE_UNAVAILABLE, Problem
from libs.common.http import json_object, request_with_retries, service_client
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.logging import get_logger
from libs.common.sealing import Sealer
from services.cashier.domain.errors import MERCHANT_SUSPENDED
from services.cashier.flows.context import Cashier
from services.cashier.store.merchants import ensure_merchant, get_merchant, update_merchant

log = get_logger("juhe.cashier.merchants")

WEBHOOK_SECRET_PATH = "/internal/v1/merchants/{merchant_id}/webhook-secret"
MERCHANT_PROFILE_PATH = "/internal/v1/merchants/{merchant_id}"
IDENTITY_KEY_ID = "cashier"
MINTED_SECRET_PREFIX = "whsec_"


def mint_webhook_secret() -> str:
    return MINTED_SECRET_PREFIX + secrets.token_hex(24)


async def _gateway_read(cashier: Cashier, path: str, *, what: str, merchant_id: str) -> dict[str, Any] | None:
    """GET an internal gateway endpoint with the cashier's service identity: its JSON object; None when no
    gateway is configured or it answers 404. Raises 503 `service_unavailable` when the gateway cannot answer."""
    settings = cashier.settings
    if not settings.gateway_url:
        return None
    token = mint_identity_token(
        settings.internal_token_secret.get_secret_value(), key_id=IDENTITY_KEY_ID, service="cashier"
    )
    try:
        async with service_client(
            settings.gateway_url.rstrip("/"), timeout_seconds=settings.gateway_timeout_seconds
        ) as http:
            response = await request_with_retries(http, "GET", path, headers={IDENTITY_HEADER: token})
    except httpx.HTTPError as exc:
        log.warning("gateway unreachable", what=what, merchant_id=merchant_id, error=repr(exc))
        raise Problem(SERVICE_UNAVAILABLE, f"the gateway could not be reached for the {what}") from exc
    if response.status_code == 404:
        return None
    body = json_object(response) if response.status_code == 200 else {}
    if not body:
        log.warning("gateway refused a read", what=what, merchant_id=merchant_id, status=response.status_code)
        raise Problem(SERVICE_UNAVAILABLE, f"the gateway answered the {what} read with HTTP {response.status_code}")
    return body


async def gateway_webhook_secret(cashier: Cashier, merchant_id: str) -> str | None:
    """The secret the gateway returned at the merchant's creation; None if the gateway does not know the
    merchant or none is configured. Raises 503 `service_unavailable` when the gateway cannot answer."""
    body = await _gateway_read(
        cashier, WEBHOOK_SECRET_PATH.format(merchant_id=merchant_id), what="webhook secret", merchant_id=merchant_id
    )
    if body is None:
        return None
    secret = body.get("webhook_secret")
    if not isinstance(secret, str) or not secret:
        raise Problem(SERVICE_UNAVAILABLE, "the gateway answered the webhook secret read without a secret")
    return secret


async def gateway_merchant_name(cashier: Cashier, merchant_id: str) -> str | None:
    """The merchant's name in the gateway's registry (what the hosted checkout shows the payer); None if the
    gateway does not know the merchant or none is configured. 503 `service_unavailable` when it cannot answer."""
    body = await _gateway_read(
        cashier, MERCHANT_PROFILE_PATH.format(merchant_id=merchant_id), what="merchant name", merchant_id=merchant_id
    )
    name = body.get("name") if body is not None else None
    return name if isinstance(name, str) and name else None


async def refuse_if_suspended(cashier: Cashier, merchant_id: str) -> None:
    """403 `merchant_suspended` when the platform suspended the merchant (the gateway's registry, asked on every
    page payment: no cache, so a suspension stops checkout pages and payment links at once). A gateway that does
    not know the merchant, or none configured, suspends nothing; one that cannot answer is 503 (retryable)."""
    body = await _gateway_read(
        cashier, MERCHANT_PROFILE_PATH.format(merchant_id=merchant_id), what="merchant status", merchant_id=merchant_id
    )
    if body is not None and body.get("suspended") is True:
        raise Problem(MERCHANT_SUSPENDED, f"merchant {merchant_id} is suspended: it takes no new payments")


async def open_merchant(cashier: Cashier, merchant_id: str, *, webhook_secret: str | None = None) -> Row[Any]:
    """The merchant's row, created on first sight with the gateway's webhook secret (see module doc).

    The gateway is asked outside any transaction (no connection held over a network call); the insert
    is `ON CONFLICT DO NOTHING`, so two first calls at once keep one row."""
    async with cashier.uow.read() as conn:
        row = await get_merchant(conn, merchant_id)
    if row is not None:
        return row
    secret = webhook_secret or await gateway_webhook_secret(cashier, merchant_id) or mint_webhook_secret()
    sealed = cashier.sealer.seal(secret, row_id=merchant_id)
    async with cashier.uow.begin() as tx:
        return await ensure_merchant(tx.conn, merchant_id, webhook_secret_sealed=sealed)


async def put_merchant(
    cashier: Cashier, merchant_id: str, *, webhook_secret: str | None, notify_url: str | None
) -> Row[Any]:
    await open_merchant(cashier, merchant_id, webhook_secret=webhook_secret)
    async with cashier.uow.begin() as tx:
        sealed = cashier.sealer.seal(webhook_secret, row_id=merchant_id) if webhook_secret is not None else None
        row = await update_merchant(tx.conn, merchant_id, webhook_secret_sealed=sealed, notify_url=notify_url)
    assert row is not None
    return row


def merchant_webhook_secret(sealer: Sealer, row: Any) -> str:
    """The merchant's webhook secret, opened from its seal (bound to the merchant's id): it signs the merchant's
    webhooks and checkout return links, so it is kept recoverable, but never in plain text at rest."""
    return sealer.open(row.webhook_secret_sealed, row_id=row.merchant_id)
