"""What a channel's payment notification acts on, read in one statement: the attempt it names, its payment, and the
version of the merchant's channel configuration of the payment's mode.

The notification was verified with a connector this process built earlier (flows/context.py `cached_modes`); the
version read here, inside the transaction that applies it, tells whether that connector is still the configuration's
(flows/notifications.py). One round trip where there were four: the configs, the attempt, the payment, and the
attempt and payment again inside the transaction (docs/performance.md, fifth pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, case, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.cashier.domain.records import AttemptRecord, PaymentRecord
from services.cashier.store.codec import attempt_from_row, payment_from_row
from services.cashier.store.tables import attempts, merchant_channels, payments

PAYMENT_PREFIX = "p_"


@dataclass(frozen=True, slots=True)
class NotifiedAttempt:
    attempt: AttemptRecord
    payment: PaymentRecord
    # The version of the merchant's config of this channel in the payment's mode; None when there is none.
    config_version: int | None


def _notified_statement() -> Any:
    payment_mode = case((payments.c.livemode, "live"), else_="test")  # libs/common/modes.py mode_of, in SQL
    config_version = (
        select(merchant_channels.c.version)
        .where(
            merchant_channels.c.merchant_id == attempts.c.merchant_id,
            merchant_channels.c.channel == attempts.c.channel,
            merchant_channels.c.mode == payment_mode,
        )
        .scalar_subquery()
    )
    return (
        select(
            attempts,
            *(column.label(PAYMENT_PREFIX + column.name) for column in payments.c),
            config_version.label("config_version"),
        )
        .join_from(attempts, payments, payments.c.id == attempts.c.payment_id)
        .where(
            attempts.c.out_trade_no == bindparam("out_trade_no"),
            attempts.c.merchant_id == bindparam("merchant_id"),
            attempts.c.channel == bindparam("channel"),
        )
    )


# Built once: the compiled-statement cache serves it to every notification.
_NOTIFIED = _notified_statement()


async def get_notified_attempt(
    conn: AsyncConnection, *, merchant_id: str, channel: str, out_trade_no: str
) -> NotifiedAttempt | None:
    """The merchant's attempt of `channel` with this `out_trade_no`, its payment and the config version; None if
    the trade is not ours."""
    parameters = {"merchant_id": merchant_id, "channel": channel, "out_trade_no": out_trade_no}
    row = (await conn.execute(_NOTIFIED, parameters)).first()
    if row is None:
        return None
    return NotifiedAttempt(attempt_from_row(row), payment_from_row(row, PAYMENT_PREFIX), row.config_version)
