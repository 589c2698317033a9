"""The marketing service's typed context: its settings, its client of the cashier and its clock, built once
at start-up.

Routes reach it through `api/deps.py` (`MarketingContextDep`), the worker's loops through
`marketing_context(runtime)`; a field here replaces a string-keyed lookup, so a missing dependency fails type
checking, not a request.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.common.web import Runtime, context_of
from services.marketing.clients.cashier import CashierClient
from services.marketing.config import Settings
from services.marketing.flows.clock import Clock, system_clock


@dataclass(frozen=True)
class MarketingContext:
    settings: Settings
    # The one client of the cashier's channel coupon API (clients/cashier.py), closed with the service.
    cashier: CashierClient
    # The time the service decides by: tests put another (`dataclasses.replace`) to cross validity, lock and undo
    # windows without waiting.
    clock: Clock = system_clock


def build_marketing_context(settings: Settings) -> MarketingContext:
    """What the start-up hook sets as `runtime.context`; it registers `cashier.aclose` among the closers."""
    cashier = CashierClient(
        settings.cashier_url,
        timeout_seconds=settings.cashier_timeout_seconds,
        identity_secret=settings.internal_token_secret.get_secret_value(),
    )
    return MarketingContext(settings=settings, cashier=cashier)


def marketing_context(runtime: Runtime) -> MarketingContext:
    return context_of(runtime, MarketingContext)
