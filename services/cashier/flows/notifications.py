"""Channel notifications: verify through the connector, then apply by compare-and-set.

A notification that does not verify changes nothing and gets the channel's failure reply (so a
genuine one delayed by a key rotation is retried by the channel). A verified one about a trade we
do not know is acknowledged (retrying cannot help) and logged. A merchant may hold a test and a live
configuration of the channel: the notification is tried with each, and one verified by a configuration of one mode
never changes a payment or refund of the other (a sandbox's keys cannot settle live money).
"""

from __future__ import annotations

from libs.common.logging import get_logger
from libs.common.modes import Mode, mode_of
from services.cashier.connectors.base import Connector, InvalidSignature, Notification, NotificationKind
from services.cashier.connectors.registry import ChannelReply, channel_spec
from services.cashier.flows.context import Cashier
from services.cashier.flows.outcomes import NotifiedTrade, apply_notified_trade, apply_refund_result
from services.cashier.store.refunds import get_refund_unscoped

log = get_logger("juhe.cashier.notify")

# Verify-and-apply rounds: the first with the connectors this process holds, then with the configs read again (a
# config changed meanwhile); a config changing under every round is refused, and the channel retries.
NOTIFICATION_ROUNDS_MAX = 3


def _verify(
    candidates: list[tuple[Mode, int, Connector]],
    *,
    channel: str,
    merchant_id: str,
    headers: dict[str, str],
    body: bytes,
) -> dict[Mode, Notification]:
    """mode → the notification as that mode's config reads it, for every config whose keys verify it."""
    verified: dict[Mode, Notification] = {}
    for mode, _version, connector in candidates:  # test and live side by side: the config whose keys signed it
        try:
            verified[mode] = connector.parse_notification(headers, body)
        except InvalidSignature as exc:
            log.warning("notification refused", channel=channel, merchant_id=merchant_id, reason=str(exc), mode=mode)
    return verified


async def handle_notification(
    cashier: Cashier, *, channel: str, merchant_id: str, headers: dict[str, str], body: bytes
) -> ChannelReply:
    """Verify with the connectors this process already holds (no read), and apply a payment's notification only if
    the transaction that applies it finds the config of the payment's mode at the version that verified it; else, or
    when nothing verifies, or for any other kind of notification, read the configs again and verify again. A config
    changed or a key replaced on any replica is therefore used by the next notification (docs/performance.md)."""
    spec = channel_spec(channel)
    fresh = False
    for _ in range(NOTIFICATION_ROUNDS_MAX):
        candidates = [] if fresh else cashier.connectors.cached_modes(merchant_id, channel)
        if not candidates:
            candidates, fresh = await cashier.connectors.read_modes(merchant_id, channel), True
        if not candidates:
            log.warning("notification for a merchant channel we do not have", channel=channel, merchant_id=merchant_id)
            return spec.refuse_notification(f"merchant {merchant_id} has no {channel} channel configured")
        verified = _verify(candidates, channel=channel, merchant_id=merchant_id, headers=headers, body=body)
        notification = next(iter(verified.values()), None)
        if notification is None or (notification.kind is not NotificationKind.PAYMENT and not fresh):
            if fresh:
                return spec.refuse_notification("signature verification failed")
            fresh = True  # a key replaced since this process built its connector: verify with the configs as they are
            continue
        if notification.kind is NotificationKind.PAYMENT and notification.payment is not None:
            done, mode = await apply_notified_trade(
                cashier,
                merchant_id=merchant_id,
                channel=channel,
                result=notification.payment,
                versions={mode: version for mode, version, _connector in candidates},
                verified=verified.keys(),
            )
            if done is NotifiedTrade.STALE_CONFIG:
                fresh = True
                continue
            if done is NotifiedTrade.UNKNOWN:
                log.warning(
                    "verified notification for an unknown trade", out_trade_no=notification.payment.out_trade_no
                )
            elif done is NotifiedTrade.OTHER_MODE:  # a sandbox's keys never settle a live payment, nor vice versa
                log.warning("notification of the other mode", out_trade_no=notification.payment.out_trade_no)
                return spec.refuse_notification(f"not signed by a {mode} configuration")
        elif notification.kind is NotificationKind.REFUND and notification.refund is not None:
            async with cashier.uow.read() as conn:
                refund = await get_refund_unscoped(conn, notification.refund.out_refund_no)
            if refund is None or refund.merchant_id != merchant_id or refund.channel != channel:
                log.warning(
                    "verified notification for an unknown refund", out_refund_no=notification.refund.out_refund_no
                )
            elif mode_of(refund.livemode) not in verified:
                log.warning("notification of the other mode", out_refund_no=notification.refund.out_refund_no)
                return spec.refuse_notification(f"not signed by a {mode_of(refund.livemode)} configuration")
            else:
                await apply_refund_result(
                    cashier, refund_id=refund.id, result=notification.refund, source="notification"
                )
        return ChannelReply(notification.ack_status_code, notification.ack_body, notification.ack_content_type)
    log.warning("channel configuration changed during every round; refused", channel=channel, merchant_id=merchant_id)
    return spec.refuse_notification("channel configuration changed while verifying; retry")
