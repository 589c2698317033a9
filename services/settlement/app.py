"""Wiring of the settlement service: routers, subscriptions, background loops. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.web import Runtime, create_service_app
from services.settlement import worker
from services.settlement.api.routes import (
    admin,
    consistency,
    cycles,
    exceptions,
    internal,
    merchant,
    payouts,
    reconciliation,
)
from services.settlement.clients.bank import BankClient
from services.settlement.clients.cashier import CashierClient
from services.settlement.clients.ledger import LedgerClient
from services.settlement.clients.rails import ChannelRails
from services.settlement.config import Settings
from services.settlement.flows.payouts import Payouts
from services.settlement.flows.profit_sharing import ChannelSharing
from services.settlement.flows.withdrawals import Withdrawals
from services.settlement.store.ledger_accounts import MirroredAccounts


def create_app(settings: Settings) -> FastAPI:
    async def on_startup(runtime: Runtime) -> None:
        ledger = LedgerClient.build(
            settings.ledger_url, MirroredAccounts(runtime.uow), timeout_seconds=settings.http_timeout_seconds
        )
        cashier = CashierClient.build(settings.cashier_url, timeout_seconds=settings.http_timeout_seconds)
        bank = BankClient.build(
            settings.bank_url, settings.bank_client_id, settings.bank_secret.get_secret_value(),
            timeout_seconds=settings.http_timeout_seconds, skew_seconds_max=settings.bank_signature_skew_seconds_max,
        )  # fmt: skip
        runtime.extras["ledger"] = ledger
        runtime.extras["cashier"] = cashier
        channels = ChannelRails.build(
            settings.cashier_url, settings.channel_payout_merchant_id, timeout_seconds=settings.http_timeout_seconds
        )
        runtime.extras["payouts"] = Payouts(runtime.uow, ledger, bank, settings, channels)
        runtime.extras["withdrawals"] = Withdrawals(runtime.uow, ledger, bank, settings, channels)
        sharing = ChannelSharing(runtime.uow, ledger, cashier, settings)
        runtime.extras["profit_sharing"] = sharing
        runtime.extras.setdefault("closers", []).extend([ledger.aclose, cashier.aclose, bank.aclose, channels.aclose])

    return create_service_app(
        settings,
        title="Juhe settlement",
        routers=[
            admin.router,
            reconciliation.router,
            exceptions.router,
            cycles.router,
            merchant.router,
            payouts.router,
            internal.router,
            consistency.router,
        ],
        subscriptions=worker.subscriptions(settings),
        background=worker.background_tasks(settings),
        on_startup=on_startup,
    )
