"""Transfers to an Alipay account (单笔转账 `alipay.fund.trans.uni.transfer`, query by
`alipay.fund.trans.common.query`): payouts and withdrawals to an Alipay balance.

Alipay opens its fund APIs to certificate-mode apps only (AlipayConfig with the three certificates).
The answer is synchronous: SUCCESS, DEALING (→ PENDING, ask again), FAIL/CLOSED (→ FAILED), or a
business refusal (ChannelError with Alipay's sub_code, e.g. PAYER_BALANCE_NOT_ENOUGH,
PAYEE_USER_INFO_ERROR). `out_biz_no` is the idempotency key: repeating the same request answers the
same order, so a payout whose answer was lost is retried safely.
"""

from __future__ import annotations

from typing import Any

from services.cashier.connectors.alipay.client import AlipayConnector
from services.cashier.connectors.alipay.models import fen_to_yuan, response_yuan_to_fen
from services.cashier.connectors.base import ChannelError, TransferRequest, TransferResult, TransferStatus

METHOD_TRANSFER = "alipay.fund.trans.uni.transfer"
METHOD_QUERY = "alipay.fund.trans.common.query"
PRODUCT = {"product_code": "TRANS_ACCOUNT_NO_PWD", "biz_scene": "DIRECT_TRANSFER"}
STATES = {
    "SUCCESS": TransferStatus.SUCCEEDED,
    "DEALING": TransferStatus.PENDING,
    "WAIT_PAY": TransferStatus.PENDING,
    "FAIL": TransferStatus.FAILED,
    "CLOSED": TransferStatus.FAILED,
    "REFUND": TransferStatus.FAILED,
}
NOT_FOUND_SUB_CODES = frozenset({"ORDER_NOT_EXIST"})


def _result(node: dict[str, Any], out_biz_no: str) -> TransferResult:
    status = str(node.get("status", ""))
    return TransferResult(
        status=STATES.get(status, TransferStatus.PENDING),
        out_transfer_no=str(node.get("out_biz_no") or out_biz_no),
        channel_transfer_no=str(node["order_id"]) if node.get("order_id") else None,
        amount_minor=response_yuan_to_fen(node.get("trans_amount")),
        fail_reason=node.get("fail_reason") or None,
    )


def _require_certificate_mode(connector: AlipayConnector) -> None:
    if not connector.config.certificate_mode:
        raise ChannelError(
            "CERTIFICATE_MODE_REQUIRED",
            "Alipay transfers need certificate mode (app_cert_pem, alipay_cert_pem, alipay_root_cert_pem)",
        )


async def transfer(connector: AlipayConnector, request: TransferRequest) -> TransferResult:
    _require_certificate_mode(connector)
    if request.currency != "CNY":
        raise ChannelError("INVALID_PARAMETER", "Alipay transfers are in CNY")
    payee: dict[str, Any] = {"identity": request.payee, "identity_type": request.payee_type}
    if request.payee_name:
        payee["name"] = request.payee_name
    biz = {
        "out_biz_no": request.out_transfer_no,
        "trans_amount": fen_to_yuan(request.amount_minor),
        **PRODUCT,
        "order_title": request.remark[:128],
        "payee_info": payee,
    }
    node = await connector._call(METHOD_TRANSFER, biz)
    connector._raise_for_code(METHOD_TRANSFER, node)
    return _result({**node, "trans_amount": biz["trans_amount"]}, request.out_transfer_no)


async def query_transfer(connector: AlipayConnector, out_transfer_no: str) -> TransferResult:
    _require_certificate_mode(connector)
    node = await connector._call(METHOD_QUERY, {"out_biz_no": out_transfer_no, **PRODUCT})
    if str(node.get("sub_code", "")) in NOT_FOUND_SUB_CODES:
        return TransferResult(status=TransferStatus.NOT_FOUND, out_transfer_no=out_transfer_no)
    connector._raise_for_code(METHOD_QUERY, node)
    return _result(node, out_transfer_no)
