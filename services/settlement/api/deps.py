"""Request dependencies: the ledger and cashier clients built at start-up."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.settlement.flows.cashier import CashierClient
from services.settlement.flows.ledger import LedgerClient


def get_ledger(request: Request) -> LedgerClient:
    ledger: LedgerClient = request.app.state.runtime.extras["ledger"]
    return ledger


def get_cashier(request: Request) -> CashierClient:
    cashier: CashierClient = request.app.state.runtime.extras["cashier"]
    return cashier


LedgerDep = Annotated[LedgerClient, Depends(get_ledger)]
CashierDep = Annotated[CashierClient, Depends(get_cashier)]
