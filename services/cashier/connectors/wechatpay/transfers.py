"""商家转账 (WeChat Pay's upgraded merchant transfer to a user's change), merchant side.

`transfer` answers WAITING_USER with the `package_info` the user's WeChat needs to confirm receipt
(JSAPI `requestMerchantTransfer`); the final state (SUCCESS / FAIL / CANCELLED) comes by callback
(`MCHTRANSFER.BILL.FINISHED`, `parse_transfer_notification`) or by `query_transfer`. `cancel_transfer`
withdraws a bill the user has not confirmed. Tolerant reader: unknown states are PENDING (keep asking).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from services.cashier.connectors.base import (
    ChannelError,
    ChannelUnavailable,
    InvalidSignature,
    TransferRequest,
    TransferResult,
    TransferStatus,
)
from services.cashier.connectors.wechatpay import signing
from services.cashier.connectors.wechatpay.client import WechatPayConnector

PATH = "/v3/fund-app/mch-transfer/transfer-bills"
NAME_REQUIRED_FROM_FEN = 200_000  # WeChat demands the payee's real name from 2,000 yuan
NAME_SENT_FROM_FEN = 30  # below 0.30 yuan WeChat ignores a name; the SDKs do not send it
STATES = {
    "ACCEPTED": TransferStatus.PENDING,
    "PROCESSING": TransferStatus.PENDING,
    "WAIT_USER_CONFIRM": TransferStatus.WAITING_USER,
    "TRANSFERING": TransferStatus.PENDING,
    "SUCCESS": TransferStatus.SUCCEEDED,
    "FAIL": TransferStatus.FAILED,
    "CANCELING": TransferStatus.PENDING,
    "CANCELLED": TransferStatus.CANCELLED,
}


def _result(data: dict[str, Any], out_bill_no: str) -> TransferResult:
    state = str(data.get("state", ""))
    amount = data.get("transfer_amount")
    package_info = data.get("package_info")
    return TransferResult(
        status=STATES.get(state, TransferStatus.PENDING),
        out_transfer_no=str(data.get("out_bill_no") or out_bill_no),
        channel_transfer_no=data.get("transfer_bill_no") or None,
        amount_minor=amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
        user_action={"package_info": package_info} if package_info else None,
        fail_reason=data.get("fail_reason") or None,
    )


async def transfer(connector: WechatPayConnector, request: TransferRequest) -> TransferResult:
    """Create the bill (idempotent by out_bill_no at WeChat); WAITING_USER until the user confirms."""
    if request.currency != "CNY":
        raise ChannelError("PARAM_ERROR", "WeChat transfers are in CNY")
    if request.amount_minor >= NAME_REQUIRED_FROM_FEN and not request.payee_name:
        raise ChannelError("PARAM_ERROR", "payee_name is required from 2000 yuan")
    config = connector.config
    body: dict[str, Any] = {
        "appid": config.payer_appid,
        "out_bill_no": request.out_transfer_no,
        "transfer_scene_id": request.scene_id or "1005",
        "openid": request.payee,
        "transfer_amount": request.amount_minor,
        "transfer_remark": request.remark[:32],
    }
    if request.notify_url:
        body["notify_url"] = request.notify_url
    if request.scene_report:
        body["transfer_scene_report_infos"] = [{"info_type": t, "info_content": c} for t, c in request.scene_report]
    serial = None
    if request.payee_name and request.amount_minor >= NAME_SENT_FROM_FEN:
        body["user_name"], serial = await connector.encrypt_sensitive(request.payee_name)
    data = connector._json(await connector._request("POST", PATH, body, wechatpay_serial=serial))
    return _result(data, request.out_transfer_no)


async def query_transfer(connector: WechatPayConnector, out_transfer_no: str) -> TransferResult:
    try:
        response = await connector._request("GET", f"{PATH}/out-bill-no/{quote(out_transfer_no, safe='')}")
    except ChannelError as exc:
        if exc.http_status == 404:
            return TransferResult(status=TransferStatus.NOT_FOUND, out_transfer_no=out_transfer_no)
        raise
    return _result(connector._json(response), out_transfer_no)


async def cancel_transfer(connector: WechatPayConnector, out_transfer_no: str) -> TransferResult:
    """Withdraw a bill the user has not confirmed (CANCELLED; a confirmed one is refused by WeChat)."""
    response = await connector._request("POST", f"{PATH}/out-bill-no/{quote(out_transfer_no, safe='')}/cancel")
    return _result(connector._json(response), out_transfer_no)


def parse_transfer_notification(
    connector: WechatPayConnector, headers: Mapping[str, str], body: bytes
) -> TransferResult:
    """Verify and decrypt a MCHTRANSFER.BILL.FINISHED callback (signature first, then AES-GCM)."""
    connector._verify_with_known_keys(headers, body)
    try:
        envelope = json.loads(body)
        if not str(envelope["event_type"]).startswith("MCHTRANSFER."):
            raise ChannelError("UNSUPPORTED_EVENT_TYPE", f"{envelope['event_type']} is not a transfer event")
        resource = envelope["resource"]
        plaintext = signing.aes_gcm_decrypt(
            connector.config.apiv3_key,
            nonce=str(resource["nonce"]),
            associated_data=str(resource.get("associated_data") or ""),
            ciphertext_b64=str(resource["ciphertext"]),
        )
        data: dict[str, Any] = json.loads(plaintext)
    except (InvalidSignature, ChannelError):
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidSignature(f"transfer notification is malformed: {exc}") from exc
    if not data.get("out_bill_no"):
        raise ChannelUnavailable("transfer notification lacks out_bill_no")
    return _result(data, str(data["out_bill_no"]))
