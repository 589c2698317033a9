"""The wallet's part of the cashier's events (docs/ledger.md §3.7): a paid `wallet_topup` payment of the platform's
collecting merchant credits the holder's balance instead of being posted as a payment (§3.1), and the end of a
top-up's refund posts or voids the hold the cashier placed on that balance (wallet/store/topup.py:finish_refund).

The ledger core's consumer (`events/consumers.py:CashierPostings`) calls this through its `WalletTopUps` protocol;
`worker.py` hands it in, so the core never imports the wallet.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from libs.common.db import UnitOfWork
from libs.common.logging import get_logger
from services.ledger.store.writer import LedgerWriter
from services.ledger.wallet.domain import errors as wallet_errors
from services.ledger.wallet.domain.entitlements import SubaccountType
from services.ledger.wallet.domain.errors import WalletError
from services.ledger.wallet.flows import wallet as flows
from services.ledger.wallet.store import topup as topups
from services.ledger.wallet.store import wallet as wallet_store

log = get_logger("juhe.ledger.consumers")


class CashierTopUps:
    """`events.consumers.WalletTopUps` of the wallet: top-up payments credited, top-up refund holds finished."""

    def __init__(self, uow: UnitOfWork, writer: LedgerWriter) -> None:
        self.uow = uow
        self.writer = writer

    async def credit(self, data: dict[str, Any]) -> bool:
        """§3.7 instead of §3.1: the holder's wallet is credited (key `top_up:pay_…`) and `top_up.credited`
        published with the operation. False when there is no wallet to credit (the caller then posts §3.1 to
        the collecting merchant, so the money is accounted for and can be refunded by an operator)."""
        payment_id, holder_id = str(data["payment_id"]), str(data.get("wallet_holder_id") or "")
        gross = int(data["amount_minor"])
        fee = min(max(int(data.get("fee_minor") or 0), 0), gross)
        async with self.uow.read() as conn:
            if await wallet_store.operation_by_key(conn, "top_up", payment_id) is not None:
                return True  # credited before (a redelivery after the operation committed)
            if not holder_id or await wallet_store.get_holder(conn, holder_id) is None:
                log.error(
                    "paid wallet top-up for an unknown holder: posted to the collecting merchant (§3.1)",
                    payment_id=payment_id,
                    holder_id=holder_id,
                )
                return False
        args: dict[str, Any] = {
            "holder_id": holder_id,
            "payment_id": payment_id,
            "amount_minor": gross,
            "currency": str(data["currency"]),
            "channel": str(data["channel"]),
            "channel_fee_minor": fee,
            "subaccount": SubaccountType.BALANCE,
            "merchant_id": "",
            "now": datetime.now(UTC),
        }
        try:
            await flows.top_up(self.uow, self.writer, **args)
        except WalletError as e:
            if e.spec not in (wallet_errors.LIMIT_EXCEEDED, wallet_errors.ENTITLEMENT_DENIED):
                raise
            # The money is collected: credit it anyway, outside the limits, and say so.
            log.warning("paid wallet top-up credited beyond the holder's limits", payment_id=payment_id, code=e.code)
            await flows.top_up(self.uow, self.writer, enforce_limits=False, **args)
        return True

    async def finish_refund(self, refund_id: str, *, succeeded: bool) -> bool:
        return await topups.finish_refund(
            self.uow, self.writer, refund_id=refund_id, succeeded=succeeded, now=datetime.now(UTC)
        )
