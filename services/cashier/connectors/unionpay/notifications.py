"""UnionPay back notifications (backUrl) and front redirects (frontUrl), docs/protocols/unionpay.md §6.

Both are form POSTs of the result fields plus `signPubKeyCert` and `signature`. A message is believed
only when its certificate chains to the configured root/middle and passes the CN rule, its
signature verifies (double SHA-256, over the fields as received), and it names this merchant.
UnionPay needs HTTP 200 to stop resending (up to 5 times over about 12 minutes).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from services.cashier.connectors.base import (
    InvalidSignature,
    Notification,
    NotificationKind,
    RefundResult,
    RefundStatus,
    TradeQueryResult,
    TradeStatus,
)
from services.cashier.connectors.unionpay import signing
from services.cashier.connectors.unionpay.certificates import CertificateError, ChainVerifier
from services.cashier.connectors.unionpay.models import (
    RESP_NO_SUCH_TXN,
    RESP_SUCCESS,
    RESP_UNKNOWN,
    TXN_CONSUME,
    TXN_REFUND,
    TXN_REVOKE,
    parse_trace_time,
    parse_txn_time,
    txn_amt_to_fen,
)

ACK_BODY = b"ok"
NOTIFICATION_BODY_MAX_BYTES = 64 * 1024


def decode_form(body: bytes) -> dict[str, str]:
    """A URL-encoded UTF-8 form; repeated keys are refused (the signed string would be ambiguous)."""
    if len(body) > NOTIFICATION_BODY_MAX_BYTES:
        raise InvalidSignature("notification body too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise InvalidSignature("notification is not UTF-8") from exc
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise InvalidSignature("repeated field in notification")
    return fields


def verify_message(fields: Mapping[str, str], verifier: ChainVerifier, mer_id: str) -> None:
    """Chain + CN + signature + addressee; raises InvalidSignature when anything is off."""
    pem = fields.get("signPubKeyCert", "")
    if not pem:
        raise InvalidSignature("message without signPubKeyCert")
    try:
        key = verifier.signing_key(pem)
    except CertificateError as exc:
        raise InvalidSignature(f"signPubKeyCert refused: {exc}") from exc
    if not signing.verify(fields, key):
        raise InvalidSignature("UnionPay signature check failed")
    if fields.get("merId") != mer_id:
        raise InvalidSignature(f"signed for another merId {fields.get('merId')!r}")


def trade_status_of(code: str) -> TradeStatus:
    if code == RESP_SUCCESS:
        return TradeStatus.SUCCEEDED
    if code in RESP_UNKNOWN:
        return TradeStatus.PENDING
    if code == RESP_NO_SUCH_TXN:
        return TradeStatus.NOT_FOUND
    return TradeStatus.FAILED


def refund_status_of(code: str) -> RefundStatus:
    if code == RESP_SUCCESS:
        return RefundStatus.SUCCEEDED
    if code in RESP_UNKNOWN:
        return RefundStatus.PENDING
    if code == RESP_NO_SUCH_TXN:
        return RefundStatus.NOT_FOUND
    return RefundStatus.FAILED


def split_reserved(fields: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(our refund number, our original order number) from a refund/revoke's `reqReserved`."""
    first, sep, second = fields.get("reqReserved", "").partition("|")
    return (first or None), (second or None) if sep else None


def payment_from_fields(fields: Mapping[str, str], code: str) -> TradeQueryResult:
    txn_time = parse_txn_time(fields.get("txnTime"))
    status = trade_status_of(code)
    return TradeQueryResult(
        status=status,
        out_trade_no=fields.get("orderId", ""),
        channel_trade_no=fields.get("queryId") or None,
        amount_minor=txn_amt_to_fen(fields.get("txnAmt")),
        paid_at=parse_trace_time(fields.get("traceTime"), txn_time) if status is TradeStatus.SUCCEEDED else None,
        detail=f"{code} {fields.get('origRespMsg') or fields.get('respMsg') or ''}".strip(),
    )


def refund_from_fields(
    fields: Mapping[str, str], code: str, *, out_refund_no: str | None = None, out_trade_no: str | None = None
) -> RefundResult:
    reserved_refund, reserved_trade = split_reserved(fields)
    status = refund_status_of(code)
    txn_time = parse_txn_time(fields.get("txnTime"))
    return RefundResult(
        status=status,
        out_refund_no=out_refund_no or reserved_refund or fields.get("orderId", ""),
        out_trade_no=out_trade_no or reserved_trade,
        channel_refund_no=fields.get("queryId") or None,
        refund_minor=txn_amt_to_fen(fields.get("txnAmt")),
        succeeded_at=parse_trace_time(fields.get("traceTime"), txn_time) if status is RefundStatus.SUCCEEDED else None,
    )


def notification_from_fields(fields: Mapping[str, str]) -> Notification:
    code = fields.get("respCode", "")
    txn_type = fields.get("txnType", "")
    if txn_type == TXN_CONSUME:
        return Notification(kind=NotificationKind.PAYMENT, payment=payment_from_fields(fields, code), ack_body=ACK_BODY)
    if txn_type in (TXN_REFUND, TXN_REVOKE):
        return Notification(kind=NotificationKind.REFUND, refund=refund_from_fields(fields, code), ack_body=ACK_BODY)
    raise InvalidSignature(f"notification of an unexpected txnType {txn_type!r}")
