"""Request dependencies: who the merchant is, and the cashier context."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from libs.common.errors import Problem
from services.cashier.domain.errors import MERCHANT_ID_MISSING
from services.cashier.flows.context import Cashier

MERCHANT_HEADER = "X-Juhe-Merchant-Id"


def authenticated_merchant_id(
    merchant_id: Annotated[str | None, Header(alias=MERCHANT_HEADER, max_length=64)] = None,
) -> str:
    """The merchant the request acts for. The ONE place that decides it: today a header the gateway
    sets; when the gateway's signed internal token lands, verify it here and nothing else changes."""
    if not merchant_id:
        raise Problem(MERCHANT_ID_MISSING, f"header {MERCHANT_HEADER} is required")
    return merchant_id


def get_cashier(request: Request) -> Cashier:
    cashier: Cashier = request.app.state.runtime.extras["cashier"]
    return cashier


MerchantId = Annotated[str, Depends(authenticated_merchant_id)]
CashierDep = Annotated[Cashier, Depends(get_cashier)]
