"""Request dependencies: who the merchant (or paying user) is, and the cashier context."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.errors import VALIDATION_FAILED, Problem
from libs.common.internal_auth import InternalIdentity, MerchantScope, narrowed_livemode
from services.cashier.context import cashier_context
from services.cashier.domain.errors import PAYMENT_NOT_FOUND
from services.cashier.flows.context import Cashier
from services.cashier.store.payments import get_payment


async def get_cashier(request: Request) -> Cashier:
    """Async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a hop on every request."""
    return cashier_context(request.app.state.runtime).cashier


# The merchant every query is scoped by: from the gateway's signed `X-Juhe-Identity` token (in dev/test
# only, without a token, the plain `X-Juhe-Merchant-Id` header). 401 identity_missing / identity_invalid,
# 403 merchant_scope_required for an identity without a merchant.
MerchantId = MerchantScope
# Who calls, for endpoints a user (not a merchant) may call: the wallet payer's confirmation.
Caller = InternalIdentity
CashierDep = Annotated[Cashier, Depends(get_cashier)]

PAGE_SIZE_DEFAULT = 20


async def refuse_other_mode(
    cashier: Cashier, caller: InternalIdentity, load: Callable[[AsyncConnection], Awaitable[Any]], not_found: Problem
) -> None:
    """Raise `not_found` when the caller's key is of the other mode than the object `load` reads (docs/test-mode.md):
    to a test key a live object does not exist, nor the other way round. An object that does not exist at all is
    left to the endpoint itself (its own 404); a caller without a key mode sees both."""
    livemode = cashier.livemode_filter(caller)
    if livemode is None:
        return
    async with cashier.uow.read() as conn:
        row = await load(conn)
    if row is not None and row.livemode is not livemode:
        raise not_found


async def ensure_payment_in_mode(cashier: Cashier, caller: InternalIdentity, merchant_id: str, payment_id: str) -> None:
    """404 `payment_not_found` for a payment of the other mode: a test key never refunds, lists or reads anything of
    a live payment, nor the other way round."""
    await refuse_other_mode(
        cashier,
        caller,
        lambda conn: get_payment(conn, merchant_id=merchant_id, payment_id=payment_id),
        Problem(PAYMENT_NOT_FOUND, f"payment {payment_id} does not exist"),
    )


def livemode_query(cashier: Cashier, caller: InternalIdentity, requested: bool | None) -> bool | None:
    """The mode a list is filtered by: the caller's key's (a `livemode` query naming the other is 422); a caller
    without a key mode (a console session, a service) may pick one with `livemode`, else sees both."""
    return narrowed_livemode(cashier.livemode_filter(caller), requested)


# `?livemode=true|false` on lists: see `livemode_query`.
LivemodeQuery = Annotated[
    bool | None, Query(description="Only live (true) or test (false) objects; a key always sees only its own mode")
]


async def _payment_in_mode(
    payment_id: str,
    merchant_id: MerchantScope,
    caller: InternalIdentity,
    cashier: Annotated[Cashier, Depends(get_cashier)],
) -> None:
    await ensure_payment_in_mode(cashier, caller, merchant_id, payment_id)


# For routes under /v1/payments/{payment_id}/…: the payment must be of the caller's mode.
PaymentOfCallersMode = Depends(_payment_in_mode)


def _page_size(default: int | None) -> Callable[..., Awaitable[int]]:
    async def page_size(cashier: CashierDep, limit: Annotated[int | None, Query(ge=1)] = None) -> int:
        """Rows per page: at most the `page_size_max` setting (a larger `limit` is 422 validation_failed,
        nothing read); without `limit`, `default` (capped by that maximum) or the maximum itself."""
        maximum = cashier.settings.page_size_max
        if limit is None:
            return maximum if default is None else min(default, maximum)
        if limit > maximum:
            raise Problem(VALIDATION_FAILED, f"limit must be at most {maximum}", limit_max=maximum)
        return limit

    return page_size


# Every cashier list takes one of these (tests/integration/flows/test_page_limits.py).
PageSize = Annotated[int, Depends(_page_size(PAGE_SIZE_DEFAULT))]
# A payment's refunds and webhook deliveries were returned whole before they had pages: by default as many
# as the maximum allows, so a client that never pages keeps seeing everything a payment normally has.
PageSizeOrMax = Annotated[int, Depends(_page_size(None))]
