"""Verify, decrypt and parse WeChat Pay v3 callbacks (docs/protocols/wechatpay.md §5) into base.Notification.

Order matters: the signature over the raw body is checked before anything in it is trusted, then
the resource is decrypted (AES-256-GCM authenticates it a second time under the APIv3 key).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from services.cashier.connectors.base import (
    ChannelError,
    InvalidSignature,
    Notification,
    NotificationKind,
    RefundResult,
)
from services.cashier.connectors.wechatpay import signing
from services.cashier.connectors.wechatpay.mapping import refund_result, trade_result

# The reply WeChat expects: any 2xx; the older docs asked for this JSON, which 2xx also satisfies.
ACK_BODY = json.dumps({"code": "SUCCESS", "message": "成功"}, ensure_ascii=False).encode("utf-8")


def parse_notification(
    headers: Mapping[str, str],
    body: bytes,
    *,
    public_key: rsa.RSAPublicKey | None,
    public_key_id: str | None,
    apiv3_key: str,
    clock_skew_seconds_max: int,
    certificates: Mapping[str, rsa.RSAPublicKey] | None = None,
) -> Notification:
    signing.verify_wechatpay_signature(
        headers,
        body,
        public_key=public_key,
        public_key_id=public_key_id,
        certificates=certificates,
        clock_skew_seconds_max=clock_skew_seconds_max,
    )
    try:
        envelope = json.loads(body)
        resource = envelope["resource"]
        event_type = str(envelope["event_type"])
        plaintext = signing.aes_gcm_decrypt(
            apiv3_key,
            nonce=str(resource["nonce"]),
            associated_data=str(resource.get("associated_data") or ""),
            ciphertext_b64=str(resource["ciphertext"]),
        )
        data: dict[str, Any] = json.loads(plaintext)
    except InvalidSignature:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        # Signed but malformed: nothing may change; report it like a forgery.
        raise InvalidSignature(f"notification body is malformed: {exc}") from exc
    if event_type.startswith("TRANSACTION."):
        return Notification(
            kind=NotificationKind.PAYMENT,
            payment=trade_result(data),
            ack_status_code=200,
            ack_body=ACK_BODY,
            ack_content_type="application/json",
        )
    if event_type.startswith("REFUND."):
        refund: RefundResult = refund_result(data, status_field="refund_status")
        return Notification(
            kind=NotificationKind.REFUND,
            refund=refund,
            ack_status_code=200,
            ack_body=ACK_BODY,
            ack_content_type="application/json",
        )
    raise ChannelError("UNSUPPORTED_EVENT_TYPE", f"notification event {event_type} is not handled")
