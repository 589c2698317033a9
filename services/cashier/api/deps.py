"""Request dependencies: who the merchant (or paying user) is, and the cashier context."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

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
