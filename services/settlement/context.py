"""Settlement's typed context: its settings and every client and flow object built once at start-up.

Routes reach it through `api/deps.py` (`SettlementContextDep` and the narrower `LedgerDep`, `CashierDep`,
`PayoutsDep`, `WithdrawalsDep`, `SettingsDep`), the worker's loops through `settlement_context(runtime)`
(worker.py); a field here replaces a string-keyed lookup, so a missing dependency fails type checking, not a
request or a loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.common.db import UnitOfWork
from libs.common.web import Runtime, context_of
from services.settlement.clients.bank import BankClient
from services.settlement.clients.cashier import CashierClient
from services.settlement.clients.ledger import LedgerClient
from services.settlement.clients.rails import ChannelRails
from services.settlement.config import Settings
from services.settlement.flows.payouts import Payouts
from services.settlement.flows.profit_sharing import ChannelSharing
from services.settlement.flows.withdrawals import Withdrawals
from services.settlement.store.ledger_accounts import MirroredAccounts


@dataclass(frozen=True)
class SettlementContext:
    settings: Settings
    uow: UnitOfWork
    ledger: LedgerClient
    cashier: CashierClient  # bills, payment re-query, channel profit sharing
    bank: BankClient
    channels: ChannelRails  # the wechat_change / alipay_account payout rails, through the cashier
    payouts: Payouts
    withdrawals: Withdrawals
    profit_sharing: ChannelSharing


def build_settlement_context(runtime: Runtime, settings: Settings) -> SettlementContext:
    """What the start-up hook sets as `runtime.context`; the HTTP clients it opens are registered among the
    runtime's closers (closed after the loops stop)."""
    timeout = settings.http_timeout_seconds
    ledger = LedgerClient.build(settings.ledger_url, MirroredAccounts(runtime.uow), timeout_seconds=timeout)
    cashier = CashierClient.build(settings.cashier_url, timeout_seconds=timeout)
    bank = BankClient.build(
        settings.bank_url,
        settings.bank_client_id,
        settings.bank_secret.get_secret_value(),
        timeout_seconds=timeout,
        skew_seconds_max=settings.bank_signature_skew_seconds_max,
    )
    channels = ChannelRails.build(settings.cashier_url, settings.channel_payout_merchant_id, timeout_seconds=timeout)
    runtime.closers.extend([ledger.aclose, cashier.aclose, bank.aclose, channels.aclose])
    return SettlementContext(
        settings=settings,
        uow=runtime.uow,
        ledger=ledger,
        cashier=cashier,
        bank=bank,
        channels=channels,
        payouts=Payouts(runtime.uow, ledger, bank, settings, channels),
        withdrawals=Withdrawals(runtime.uow, ledger, bank, settings, channels),
        profit_sharing=ChannelSharing(runtime.uow, ledger, cashier, settings),
    )


def settlement_context(runtime: Runtime) -> SettlementContext:
    return context_of(runtime, SettlementContext)
