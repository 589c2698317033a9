"""Wallet payments: the payer confirms, the ledger hold is posted, the payment succeeds (docs/ledger.md §3.2).

Creation, expiry, close, polling and refunds of wallet payments are the ordinary flows (the wallet is a
connector); only the payer's confirmation is wallet-specific. The success is applied through
`apply_trade_result`, the same compare-and-set path as every channel, so concurrent confirms (or a
confirm racing a poll) make one transition, one event and one webhook — and the ledger posts the hold
once, because posting a posted hold is a replay there.
"""

from __future__ import annotations

from typing import Any

from libs.common.errors import Problem
from services.cashier.connectors.base import ChannelError, ChannelUnavailable
from services.cashier.connectors.wallet import WalletConnector
from services.cashier.domain.errors import (
    CHANNEL_UNAVAILABLE,
    PAYER_MISMATCH,
    PAYMENT_NOT_CONFIRMABLE,
    PAYMENT_NOT_FOUND,
)
from services.cashier.domain.payments import PaymentScene, PaymentStatus
from services.cashier.flows.context import Cashier
from services.cashier.flows.outcomes import apply_trade_result
from services.cashier.flows.payments import read_payment
from services.cashier.store.payments import get_attempt, get_payment, get_payment_unscoped


async def confirm_wallet_payment(
    cashier: Cashier, *, payment_id: str, payer_user_id: str, merchant_id: str | None
) -> dict[str, Any]:
    """Post the payer's hold and apply the success. Repeating a confirmation answers the succeeded payment."""
    async with cashier.uow.read() as conn:
        payment = (
            await get_payment(conn, merchant_id=merchant_id, payment_id=payment_id)
            if merchant_id
            else await get_payment_unscoped(conn, payment_id)
        )
        current = payment.current_attempt_id if payment is not None else None
        attempt = await get_attempt(conn, current) if current else None
    if payment is None or payment.scene != PaymentScene.WALLET:
        raise Problem(PAYMENT_NOT_FOUND, f"wallet payment {payment_id} does not exist")
    if (payment.payer or {}).get("user_id") != payer_user_id:
        raise Problem(PAYER_MISMATCH, "this payment is not yours to confirm")
    if payment.status != PaymentStatus.SUCCEEDED:
        if payment.status != PaymentStatus.PROCESSING or attempt is None:
            raise Problem(PAYMENT_NOT_CONFIRMABLE, f"the payment is {payment.status}", payment_status=payment.status)
        connector = await cashier.connectors.get(payment.merchant_id, attempt.channel, livemode=payment.livemode)
        assert isinstance(connector, WalletConnector)
        try:
            result = await connector.confirm(attempt.out_trade_no)
        except ChannelUnavailable as exc:
            raise Problem(CHANNEL_UNAVAILABLE, f"the ledger did not answer: {exc}") from exc
        except ChannelError as exc:
            raise Problem(PAYMENT_NOT_CONFIRMABLE, f"the wallet hold cannot be posted: {exc.code}") from exc
        # A released hold (expired or voided) closes the payment here; a posted one makes it succeed.
        await apply_trade_result(cashier, attempt_id=attempt.id, result=result, source="confirm")
    view = await read_payment(cashier, merchant_id=payment.merchant_id, payment_id=payment.id)
    if view["status"] != PaymentStatus.SUCCEEDED:
        raise Problem(PAYMENT_NOT_CONFIRMABLE, f"the payment is {view['status']}", payment_status=view["status"])
    return view
