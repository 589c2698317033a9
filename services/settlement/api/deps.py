"""Request dependencies: settlement's typed context (context.py) and the parts of it routes use, the platform-only
guard, page limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from libs.common.errors import FORBIDDEN, Problem
from libs.common.internal_auth import DEV_MERCHANT_HEADER, IDENTITY_HEADER, internal_identity
from libs.common.paging import cursor_query, page_limit
from libs.common.web import get_runtime
from services.settlement.clients.cashier import CashierClient
from services.settlement.clients.ledger import LedgerClient
from services.settlement.config import Settings
from services.settlement.context import SettlementContext, settlement_context
from services.settlement.flows.payouts import Payouts
from services.settlement.flows.withdrawals import Withdrawals


async def get_context(request: Request) -> SettlementContext:
    """Async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a hop per request."""
    return settlement_context(get_runtime(request))


SettlementContextDep = Annotated[SettlementContext, Depends(get_context)]


async def get_settings(context: SettlementContextDep) -> Settings:
    return context.settings


async def get_ledger(context: SettlementContextDep) -> LedgerClient:
    return context.ledger


async def get_cashier(context: SettlementContextDep) -> CashierClient:
    return context.cashier


async def get_payouts(context: SettlementContextDep) -> Payouts:
    return context.payouts


async def get_withdrawals(context: SettlementContextDep) -> Withdrawals:
    return context.withdrawals


SettingsDep = Annotated[Settings, Depends(get_settings)]
LedgerDep = Annotated[LedgerClient, Depends(get_ledger)]
CashierDep = Annotated[CashierClient, Depends(get_cashier)]
PayoutsDep = Annotated[Payouts, Depends(get_payouts)]
WithdrawalsDep = Annotated[Withdrawals, Depends(get_withdrawals)]


def platform_only(request: Request) -> None:
    """Defence in depth behind the gateway's own guard: the `/v1/settlement` routes are the platform's.
    A merchant or user identity (signed token, or the dev merchant header) is refused with 403; a platform
    (also one acting for a merchant), a Juhe service, or an internal call without an identity may pass."""
    if IDENTITY_HEADER not in request.headers and DEV_MERCHANT_HEADER not in request.headers:
        return
    identity = internal_identity(request)
    if identity.kind in ("merchant", "user"):
        raise Problem(FORBIDDEN, f"a {identity.kind} identity may not call the platform's settlement API")


PlatformOnly = Depends(platform_only)


# Bounded by the `page_size_max` setting (libs.common.paging: over it is 422 with `limit_max`).
PageLimit = Annotated[int, Depends(page_limit(100))]
# A page of settlement batches starts after this batch id (newest first); anything else is 422.
BatchCursor = Annotated[str | None, cursor_query(r"^stl_[0-9a-z]+$")]
