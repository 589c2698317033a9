"""Request dependencies: the ledger and cashier clients built at start-up, the platform-only guard."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from libs.common.errors import FORBIDDEN, Problem
from libs.common.internal_auth import DEV_MERCHANT_HEADER, IDENTITY_HEADER, internal_identity
from libs.common.paging import cursor_query, page_limit
from services.settlement.clients.cashier import CashierClient
from services.settlement.clients.ledger import LedgerClient


def get_ledger(request: Request) -> LedgerClient:
    ledger: LedgerClient = request.app.state.runtime.extras["ledger"]
    return ledger


def get_cashier(request: Request) -> CashierClient:
    cashier: CashierClient = request.app.state.runtime.extras["cashier"]
    return cashier


LedgerDep = Annotated[LedgerClient, Depends(get_ledger)]
CashierDep = Annotated[CashierClient, Depends(get_cashier)]


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
