"""Channel notifications: verify through the connector, then apply by compare-and-set.

A notification that does not verify changes nothing and gets the channel's failure reply (so a
genuine one delayed by a key rotation is retried by the channel). A verified one about a trade we
do not know is acknowledged (retrying cannot help) and logged. A merchant may hold a test and a live
configuration of the channel: the notification is tried with each, and one verified by a configuration of one mode
never changes a payment or refund of the other (a sandbox's keys cannot settle live money).
"""

from __future__ import annotations

from libs.common.logging import get_logger
from libs.common.modes import mode_of
from services.cashier.connectors.base import InvalidSignature, Notification, NotificationKind
from services.cashier.connectors.registry import ChannelReply, channel_spec
from services.cashier.flows.context import Cashier
from services.cashier.flows.outcomes import apply_refund_result, apply_trade_result
from services.cashier.store.payments import get_attempt_by_out_trade_no, get_payment_unscoped
from services.cashier.store.refunds import get_refund_unscoped

log = get_logger("juhe.cashier.notify")


async def handle_notification(
    cashier: Cashier, *, channel: str, merchant_id: str, headers: dict[str, str], body: bytes
) -> ChannelReply:
    spec = channel_spec(channel)
    connectors = await cashier.connectors.each_mode(merchant_id, channel)
    if not connectors:
        log.warning("notification for a merchant channel we do not have", channel=channel, merchant_id=merchant_id)
        return spec.refuse_notification(f"merchant {merchant_id} has no {channel} channel configured")
    verified: dict[str, Notification] = {}  # mode → the notification as that mode's config reads it
    for mode, connector in connectors:  # test and live side by side: the config whose keys signed it verifies
        try:
            verified[mode] = connector.parse_notification(headers, body)
        except InvalidSignature as exc:
            log.warning("notification refused", channel=channel, merchant_id=merchant_id, reason=str(exc), mode=mode)
    if not verified:
        return spec.refuse_notification("signature verification failed")
    notification = next(iter(verified.values()))
    if notification.kind is NotificationKind.PAYMENT and notification.payment is not None:
        async with cashier.uow.read() as conn:
            attempt = await get_attempt_by_out_trade_no(
                conn, merchant_id=merchant_id, channel=channel, out_trade_no=notification.payment.out_trade_no
            )
            payment = await get_payment_unscoped(conn, attempt.payment_id) if attempt is not None else None
        if attempt is None or payment is None:
            log.warning("verified notification for an unknown trade", out_trade_no=notification.payment.out_trade_no)
        elif mode_of(payment.livemode) not in verified:  # a sandbox's keys never settle a live payment, nor vice versa
            log.warning("notification of the other mode", out_trade_no=notification.payment.out_trade_no)
            return spec.refuse_notification(f"not signed by a {mode_of(payment.livemode)} configuration")
        else:
            await apply_trade_result(cashier, attempt_id=attempt.id, result=notification.payment, source="notification")
    elif notification.kind is NotificationKind.REFUND and notification.refund is not None:
        async with cashier.uow.read() as conn:
            refund = await get_refund_unscoped(conn, notification.refund.out_refund_no)
        if refund is None or refund.merchant_id != merchant_id or refund.channel != channel:
            log.warning("verified notification for an unknown refund", out_refund_no=notification.refund.out_refund_no)
        elif mode_of(refund.livemode) not in verified:
            log.warning("notification of the other mode", out_refund_no=notification.refund.out_refund_no)
            return spec.refuse_notification(f"not signed by a {mode_of(refund.livemode)} configuration")
        else:
            await apply_refund_result(cashier, refund_id=refund.id, result=notification.refund, source="notification")
    return ChannelReply(notification.ack_status_code, notification.ack_body, notification.ack_content_type)
