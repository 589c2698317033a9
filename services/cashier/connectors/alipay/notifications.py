"""Alipay async notifications (trade_status_sync) and browser return redirects (docs/protocols/alipay.md §6).

Both arrive as flat key/value parameters signed by Alipay and are checked with rsaCheckV1: every
parameter except `sign` and `sign_type`, sorted, joined raw. A notification is only believed after
that check AND after it is confirmed to be addressed to this app (and seller, when configured): a
correctly signed notification for somebody else's app is still not ours to act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote_to_bytes

from services.cashier.connectors.alipay.models import (
    AlipayConfig,
    map_trade_status,
    parse_beijing,
    response_yuan_to_fen,
    voucher_discounts,
)
from services.cashier.connectors.alipay.signing import notification_sign_content, rsa2_verify
from services.cashier.connectors.base import (
    InvalidSignature,
    Notification,
    NotificationKind,
    RefundResult,
    RefundStatus,
    TradeQueryResult,
)

ACK_BODY = b"success"  # Alipay retries until it reads exactly this
NOTIFICATION_BODY_MAX_BYTES = 64 * 1024
_SUPPORTED_CHARSETS = {"utf-8", "utf8", "gbk", "gb2312", "gb18030"}


def decode_form(body: bytes) -> dict[str, str]:
    """Decode an x-www-form-urlencoded body in the charset it declares (Alipay's `charset` param).

    Percent-decoding happens on bytes first, then the bytes are decoded with the declared charset, so
    a GBK notification (older apps) is read correctly. Repeated keys are refused: the signed string
    would be ambiguous.
    """
    if len(body) > NOTIFICATION_BODY_MAX_BYTES:
        raise InvalidSignature("notification body too large")
    pairs: list[tuple[bytes, bytes]] = []
    for field in body.split(b"&"):
        if not field.strip():
            continue
        key, _, value = field.partition(b"=")
        pairs.append((unquote_to_bytes(key.replace(b"+", b" ")), unquote_to_bytes(value.replace(b"+", b" "))))
    raw = dict(pairs)
    if len(raw) != len(pairs):
        raise InvalidSignature("repeated parameter in notification")
    charset = raw.get(b"charset", b"utf-8").decode("ascii", "replace").strip().lower() or "utf-8"
    if charset not in _SUPPORTED_CHARSETS:
        raise InvalidSignature(f"unsupported notification charset {charset!r}")
    if charset in ("gbk", "gb2312"):
        charset = "gb18030"  # a superset, so every GBK byte sequence decodes
    try:
        return {k.decode(charset): v.decode(charset) for k, v in raw.items()}
    except UnicodeDecodeError as exc:
        raise InvalidSignature(f"notification is not valid {charset}") from exc


def verify_params(params: Mapping[str, str], config: AlipayConfig) -> None:
    """rsaCheckV1 plus the addressee checks; raises InvalidSignature when anything is off."""
    sign_type = params.get("sign_type", "RSA2")
    if sign_type != "RSA2":
        raise InvalidSignature(f"unsupported sign_type {sign_type!r}")
    content = notification_sign_content(params)
    if not rsa2_verify(content, params.get("sign", ""), config.alipay_public_key_pem):
        raise InvalidSignature("Alipay signature check failed")
    if params.get("app_id") != config.app_id:
        raise InvalidSignature(f"signed for another app_id {params.get('app_id')!r}")
    if config.seller_id and params.get("seller_id") and params["seller_id"] != config.seller_id:
        raise InvalidSignature(f"signed for another seller_id {params['seller_id']!r}")


def payment_from_params(params: Mapping[str, str]) -> TradeQueryResult:
    """The trade state a verified notification or return redirect reports."""
    out_trade_no = params.get("out_trade_no", "")
    if not out_trade_no:
        raise InvalidSignature("notification without out_trade_no")
    paid_at = parse_beijing(params.get("gmt_payment"))
    trade_status = params.get("trade_status")
    if trade_status is None and params.get("method", "").endswith(".return"):
        # A return redirect only happens after a successful payment and carries no trade_status.
        trade_status = "TRADE_SUCCESS"
    return TradeQueryResult(
        status=map_trade_status(trade_status, paid=paid_at is not None or trade_status == "TRADE_SUCCESS"),
        out_trade_no=out_trade_no,
        channel_trade_no=params.get("trade_no") or None,
        amount_minor=response_yuan_to_fen(params.get("total_amount")),
        paid_at=paid_at,
        detail=trade_status,
        channel_discounts=voucher_discounts(params.get("voucher_detail_list")),
    )


def parse_notification_body(body: bytes, config: AlipayConfig) -> Notification:
    """Verify and decode one notification POST body; the ack is the literal `success`.

    A refund notification is a trade_status_sync that carries `out_biz_no` (= the refund's
    out_request_no) with `refund_fee`/`gmt_refund`; it is reported as kind REFUND with the trade's
    state in `payment` too. `refund_fee` is the trade's cumulative refunded amount, not this refund's,
    so `refund.refund_minor` is left None: the cashier knows the amount it asked for.
    """
    params = decode_form(body)
    verify_params(params, config)
    payment = payment_from_params(params)
    out_biz_no = params.get("out_biz_no")
    if out_biz_no and (params.get("refund_fee") or params.get("gmt_refund")):
        refund = RefundResult(
            status=RefundStatus.SUCCEEDED,
            out_refund_no=out_biz_no,
            out_trade_no=payment.out_trade_no,
            channel_refund_no=None,
            refund_minor=None,
            succeeded_at=parse_beijing(params.get("gmt_refund")),
        )
        return Notification(kind=NotificationKind.REFUND, payment=payment, refund=refund, ack_body=ACK_BODY)
    return Notification(kind=NotificationKind.PAYMENT, payment=payment, ack_body=ACK_BODY)
