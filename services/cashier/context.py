"""The cashier's typed context: its settings and the use cases' dependencies (`Cashier`), built once at start-up.

Routes reach it through `api/deps.py` (`CashierDep`), the worker loops through `cashier_context(runtime)`; a
field here replaces a string-keyed lookup, so a missing dependency fails type checking, not a request.
`Cashier` (flows/context.py) stays the one object every flow takes: it holds the clients, the connector pool and
the clock the flows use (tests move its clock), so the context carries it rather than copying its fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.common.web import Runtime, context_of
from services.cashier.config import Settings
from services.cashier.flows.context import Cashier, build_cashier


@dataclass(frozen=True)
class CashierContext:
    settings: Settings
    # Everything a use case needs (store access, connectors, routing, settlement, marketing, ledger, webhooks).
    cashier: Cashier


def build_cashier_context(settings: Settings, runtime: Runtime) -> CashierContext:
    """What the start-up hook sets as `runtime.context`; the cashier's clients close with the runtime."""
    cashier = build_cashier(settings, runtime.uow)
    runtime.closers.append(cashier.aclose)
    return CashierContext(settings=settings, cashier=cashier)


def cashier_context(runtime: Runtime) -> CashierContext:
    return context_of(runtime, CashierContext)
