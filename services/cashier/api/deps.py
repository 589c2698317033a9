"""Request dependencies: who the merchant (or paying user) is, and the cashier context."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Query, Request

from libs.common.errors import VALIDATION_FAILED, Problem
from libs.common.internal_auth import InternalIdentity, MerchantScope
from services.cashier.flows.context import Cashier


def get_cashier(request: Request) -> Cashier:
    cashier: Cashier = request.app.state.runtime.extras["cashier"]
    return cashier


# The merchant every query is scoped by: from the gateway's signed `X-Juhe-Identity` token (in dev/test
# only, without a token, the plain `X-Juhe-Merchant-Id` header). 401 identity_missing / identity_invalid,
# 403 merchant_scope_required for an identity without a merchant.
MerchantId = MerchantScope
# Who calls, for endpoints a user (not a merchant) may call: the wallet payer's confirmation.
Caller = InternalIdentity
CashierDep = Annotated[Cashier, Depends(get_cashier)]

PAGE_SIZE_DEFAULT = 20


def _page_size(default: int | None) -> Callable[..., int]:
    def page_size(cashier: CashierDep, limit: Annotated[int | None, Query(ge=1)] = None) -> int:
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
