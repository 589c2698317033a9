"""The gateway's typed context: its settings and every client and helper its start-up builds (`app.py`),
read by routes (`api/deps.py`) and loops (`worker.py`) through `gateway_context` rather than by string keys,
so a missing or misspelt dependency fails type checking instead of a request (CONTRIBUTING "Typed context")."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.api.gatekeeper import Gatekeeper
from gateway.clients.catalog import ApiCatalog
from gateway.clients.web_pages import WebPages
from gateway.config import Settings
from gateway.flows.identities import Identities
from gateway.flows.onboarding import OnboardingFlow
from gateway.flows.staff import StaffConsole
from gateway.flows.wallet_users import WalletUsers
from libs.common.web import Runtime, context_of


@dataclass(frozen=True)
class GatewayContext:
    settings: Settings
    identities: Identities
    gatekeeper: Gatekeeper  # the admission pipeline in front of every proxied call
    catalog: ApiCatalog  # the merged public OpenAPI document, refreshed in the background
    wallet_users: WalletUsers
    staff: StaffConsole
    onboarding: OnboardingFlow
    web_pages: WebPages  # the pages' half of the one public origin


def gateway_context(runtime: Runtime) -> GatewayContext:
    return context_of(runtime, GatewayContext)
