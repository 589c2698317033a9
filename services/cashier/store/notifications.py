"""What a channel's payment notification acts on, read in one statement: the attempt it names, its payment, the
version of the merchant's channel configuration of the payment's mode, and where the merchant's webhook goes.

The notification was verified with a connector this process built earlier (flows/context.py `cached_modes`); the
version read here, inside the transaction that applies it, tells whether that connector is still the configuration's
(flows/notifications.py). One round trip where there were six: the configs, the attempt, the payment, the attempt and
payment again inside the transaction, and the webhook's targets (docs/performance.md, fifth pass). The targets come as
one row per enabled endpoint of the payment's mode (a LATERAL join; one row without endpoints).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, case, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from services.cashier.domain.records import AttemptRecord, PaymentRecord
from services.cashier.store.codec import attempt_from_row, payment_from_row
from services.cashier.store.driver import DriverStatement
from services.cashier.store.payments import ATTEMPT_ROW_VERSION, PAYMENT_ROW_VERSION
from services.cashier.store.tables import attempts, merchant_channels, payments
from services.cashier.store.webhook_endpoints import (
    DeliveryTarget,
    delivery_targets_of,
    enabled_endpoints_of,
    merchant_notify_url,
)

PAYMENT_PREFIX = "p_"


@dataclass(frozen=True, slots=True)
class NotifiedAttempt:
    attempt: AttemptRecord
    payment: PaymentRecord
    # The version of the merchant's config of this channel in the payment's mode; None when there is none.
    config_version: int | None
    # Where the payment's webhook goes (store/webhook_endpoints.py `delivery_targets`), read with it.
    targets: list[DeliveryTarget]
    # The attempt's and the payment's row versions as read (store/payments.py `settle_succeeded` compares them).
    row_versions: tuple[str, str]


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
    endpoints = enabled_endpoints_of(attempts.c.merchant_id, payments.c.livemode).lateral("endpoints")
    return (
        select(
            attempts,
            *(column.label(PAYMENT_PREFIX + column.name) for column in payments.c),
            config_version.label("config_version"),
            ATTEMPT_ROW_VERSION.label("attempt_row_version"),
            PAYMENT_ROW_VERSION.label("payment_row_version"),
            merchant_notify_url(attempts.c.merchant_id).label("merchant_url"),
            endpoints.c.id.label("endpoint_id"),
            endpoints.c.url.label("endpoint_url"),
            endpoints.c.enabled_events,
        )
        .join_from(attempts, payments, payments.c.id == attempts.c.payment_id)
        .outerjoin(endpoints, true())
        .where(
            attempts.c.out_trade_no == bindparam("out_trade_no"),
            attempts.c.merchant_id == bindparam("merchant_id"),
            attempts.c.channel == bindparam("channel"),
        )
        .order_by(endpoints.c.created_at, endpoints.c.id)
    )


# On asyncpg directly (store/driver.py): every payment's notification runs it.
_NOTIFIED = DriverStatement(_notified_statement())


async def get_notified_attempt(
    conn: AsyncConnection, *, merchant_id: str, channel: str, out_trade_no: str
) -> NotifiedAttempt | None:
    """The merchant's attempt of `channel` with this `out_trade_no`, its payment and the config version; None if
    the trade is not ours."""
    parameters = {"merchant_id": merchant_id, "channel": channel, "out_trade_no": out_trade_no}
    rows = await _NOTIFIED.fetch(conn, parameters)
    if not rows:
        return None
    payment = payment_from_row(rows[0], PAYMENT_PREFIX)
    targets = delivery_targets_of(payment.notify_url, rows)
    versions = (rows[0]["attempt_row_version"], rows[0]["payment_row_version"])
    return NotifiedAttempt(attempt_from_row(rows[0]), payment, rows[0]["config_version"], targets, versions)
