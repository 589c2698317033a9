"""Transfers to a user's channel account (payout rails), for settlement through the internal API.

Settlement pays merchant payouts and wallet withdrawals to WeChat change (商家转账 transfer-bills: the
user confirms receipt in WeChat, `WAIT_USER_CONFIRM` until then) and to an Alipay account
(`alipay.fund.trans.uni.transfer`). Settlement never imports connectors: it calls these through
`/v1/internal/transfers` with the platform merchant whose channel account pays, and keeps the state
itself (its payout / withdrawal row). Nothing is stored here: the channel is idempotent by
`out_transfer_no` (= the payout id or wallet operation id), so a repeated submit answers the same bill,
and a query always asks the channel.

WeChat's final-state callbacks (`MCHTRANSFER.BILL.FINISHED`) arrive at `/v1/notify/wechatpay-transfers/
{merchant_id}`: verified and decrypted, then settlement is nudged to ask again at once (its own poll
finds the same answer later if the nudge is lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from libs.common.errors import Problem
from libs.common.logging import get_logger
from services.cashier.connectors.base import (
    ChannelError,
    ChannelUnavailable,
    InvalidSignature,
    TransferRequest,
    TransferResult,
)
from services.cashier.connectors.registry import ChannelReply, channel_spec
from services.cashier.domain.errors import CHANNEL_REFUSED, CHANNEL_UNAVAILABLE, UNKNOWN_CHANNEL
from services.cashier.flows.context import Cashier

log = get_logger("juhe.cashier.transfers")

TRANSFER_CHANNELS = frozenset({"wechatpay", "alipay"})
NOTIFY_PATH = "/v1/notify/wechatpay-transfers/{merchant_id}"
WECHAT_ACK = ChannelReply(204, b"", "application/json")


@dataclass(frozen=True, slots=True)
class TransferDraft:
    merchant_id: str  # whose channel account pays (the platform's payout merchant)
    channel: str
    request: TransferRequest
    # The mode of the money moved (settlement's payout / withdrawal): only that mode's configuration pays, so a
    # paying merchant holding a test and a live configuration side by side is not a guess. None: its only one.
    livemode: bool | None = None


def transfer_view(channel: str, result: TransferResult) -> dict[str, Any]:
    return {
        "channel": channel,
        "out_transfer_no": result.out_transfer_no,
        "status": result.status.value,
        "channel_transfer_no": result.channel_transfer_no,
        "amount_minor": result.amount_minor,
        "user_action": result.user_action,
        "fail_reason": result.fail_reason,
    }


def _check_channel(channel: str) -> None:
    if channel not in TRANSFER_CHANNELS:
        raise Problem(
            UNKNOWN_CHANNEL, f"{channel} cannot transfer to a user's account", known=sorted(TRANSFER_CHANNELS)
        )


async def _call(
    cashier: Cashier, merchant_id: str, channel: str, livemode: bool | None, operation: str, *args: Any
) -> TransferResult:
    """One connector transfer operation on the configuration of the money's mode; channel failures become the
    catalogue's problems."""
    _check_channel(channel)
    connector = await cashier.connectors.get(merchant_id, channel, livemode=livemode)
    if channel == "wechatpay":
        from services.cashier.connectors.wechatpay import transfers as wechat

        functions: dict[str, Any] = {
            "submit": wechat.transfer,
            "query": wechat.query_transfer,
            "cancel": wechat.cancel_transfer,
        }
    else:
        from services.cashier.connectors.alipay import transfers as alipay

        functions = {"submit": alipay.transfer, "query": alipay.query_transfer}
    function = functions.get(operation)
    if function is None:
        raise Problem(CHANNEL_REFUSED, f"{channel} transfers cannot be {operation}led", channel_code="UNSUPPORTED")
    try:
        result: TransferResult = await function(connector, *args)
    except ChannelError as exc:
        if exc.retryable:
            raise Problem(CHANNEL_UNAVAILABLE, f"{channel}: {exc.code}: {exc.message}") from exc
        raise Problem(CHANNEL_REFUSED, f"{channel}: {exc.code}: {exc.message}", channel_code=exc.code) from exc
    except (ChannelUnavailable, InvalidSignature) as exc:
        raise Problem(CHANNEL_UNAVAILABLE, f"{channel}: {exc}") from exc
    return result


async def submit_transfer(cashier: Cashier, draft: TransferDraft) -> dict[str, Any]:
    request = draft.request
    if draft.channel == "wechatpay" and request.notify_url is None and cashier.settings.public_base_url:
        notify_url = cashier.settings.public_base_url.rstrip("/") + NOTIFY_PATH.format(merchant_id=draft.merchant_id)
        request = TransferRequest(**{**{f: getattr(request, f) for f in request.__slots__}, "notify_url": notify_url})
    result = await _call(cashier, draft.merchant_id, draft.channel, draft.livemode, "submit", request)
    log.info(
        "transfer submitted", channel=draft.channel, out_transfer_no=result.out_transfer_no, status=result.status.value
    )
    return transfer_view(draft.channel, result)


async def query_transfer(
    cashier: Cashier, *, merchant_id: str, channel: str, out_transfer_no: str, livemode: bool | None = None
) -> dict[str, Any]:
    return transfer_view(channel, await _call(cashier, merchant_id, channel, livemode, "query", out_transfer_no))


async def cancel_transfer(
    cashier: Cashier, *, merchant_id: str, channel: str, out_transfer_no: str, livemode: bool | None = None
) -> dict[str, Any]:
    """Withdraw a WeChat bill the user has not confirmed (it ends CANCELLED; a confirmed one is refused)."""
    return transfer_view(channel, await _call(cashier, merchant_id, channel, livemode, "cancel", out_transfer_no))


async def handle_transfer_notification(
    cashier: Cashier, *, merchant_id: str, headers: dict[str, str], body: bytes
) -> ChannelReply:
    """A WeChat transfer-bill callback: verified (signature, then AES-GCM) or refused; a verified one nudges
    settlement to ask about that bill now."""
    from services.cashier.connectors.wechatpay import WechatPayConnector
    from services.cashier.connectors.wechatpay.transfers import parse_transfer_notification

    spec = channel_spec("wechatpay")
    result = None
    refusal = f"merchant {merchant_id} has no wechatpay channel configured"
    # test and live side by side: the configuration whose keys signed it verifies it (as payment notifications)
    for mode, connector in await cashier.connectors.each_mode(merchant_id, "wechatpay"):
        try:
            assert isinstance(connector, WechatPayConnector)
            result = parse_transfer_notification(connector, headers, body)
            break
        except (InvalidSignature, ChannelError, ChannelUnavailable, Problem) as exc:
            log.warning("transfer notification refused", merchant_id=merchant_id, mode=mode, error=repr(exc))
            refusal = str(exc)
    if result is None:
        return spec.refuse_notification(refusal)
    log.info("transfer notification", out_transfer_no=result.out_transfer_no, status=result.status.value)
    await cashier.settlement.nudge_transfer(result.out_transfer_no)
    return WECHAT_ACK
