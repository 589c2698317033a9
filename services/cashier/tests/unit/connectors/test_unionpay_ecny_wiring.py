"""UnionPay and e-CNY as cashier channels: registry entries, routing methods, refusal replies, secrets
redacted, and when a UnionPay refund is a 消费撤销 revoke (full amount, the consume's own Beijing day).

The PFX and chain come from the UnionPay sandbox's PKI: the cryptography itself is checked against
openssl in test_unionpay_signing.py; here only the wiring is under test.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from libs.common.errors import Problem
from sandboxes.unionpay.certificates import SandboxPki
from services.cashier.connectors.base import ChannelError, RefundRequest, RefundResult, RefundStatus
from services.cashier.connectors.registry import CHANNELS, build_connector, redacted
from services.cashier.connectors.unionpay import UnionPayConfig, UnionPayConnector
from services.cashier.domain.payments import ORDER_EXISTS_CODES, PaymentScene
from services.cashier.flows.refunds import Revocable, return_money
from services.cashier.flows.routing import METHOD_OF_CHANNEL

MER_ID = "777290058110048"


def uuid7_hex(at: datetime) -> str:
    """A UUIDv7 (as Juhe's ids are) whose timestamp is `at`: what UnionPay's txnTime is derived from."""
    millis = int(at.timestamp() * 1000)
    value = (millis << 80) | (0x7 << 76) | (secrets.randbits(12) << 64) | (0b10 << 62) | secrets.randbits(62)
    return uuid.UUID(int=value).hex


@pytest.fixture(scope="module")
def unionpay_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pki = SandboxPki.load_or_create(Path(tmp_path_factory.mktemp("unionpay-pki")))
    pfx, _certificate = pki.issue_merchant(MER_ID, "000000")
    return {
        "base_url": "http://127.0.0.1:9",
        "mer_id": MER_ID,
        "sign_pfx_base64": base64.b64encode(pfx).decode(),
        "sign_pfx_password": "000000",
        "root_cert_pem": pki.root.pem,
        "middle_cert_pem": pki.middle.pem,
        "validate_cn_name": False,
    }


def test_both_channels_are_registered_with_their_scenes_and_routing_methods() -> None:
    assert CHANNELS["unionpay"].scenes == {PaymentScene.PAGE, PaymentScene.H5, PaymentScene.APP}
    assert CHANNELS["ecny"].scenes == {PaymentScene.NATIVE_QR, PaymentScene.H5}
    assert CHANNELS["unionpay"].currencies == CHANNELS["ecny"].currencies == {"CNY"}
    assert (METHOD_OF_CHANNEL["unionpay"], METHOD_OF_CHANNEL["ecny"]) == ("unionpay", "ecny")
    assert {"UNIONPAY_12", "ORDER_NO_USED"} <= ORDER_EXISTS_CODES  # duplicate order → re-drive asks the channel


def test_refused_notifications_get_a_reply_the_channel_retries() -> None:
    unionpay = CHANNELS["unionpay"].refuse_notification("bad signature")
    assert unionpay.status_code != 200  # UnionPay resends until HTTP 200
    ecny = CHANNELS["ecny"].refuse_notification("bad signature")
    assert ecny.status_code == 401 and b'"FAIL"' in ecny.body  # the bank resends until 200 + SUCCESS


def test_configs_build_connectors_and_secrets_are_redacted(unionpay_config: dict[str, Any]) -> None:
    assert isinstance(build_connector("unionpay", unionpay_config), UnionPayConnector)
    shown = redacted("unionpay", unionpay_config)
    assert shown["sign_pfx_base64"] == shown["sign_pfx_password"] == "***" and shown["mer_id"] == MER_ID
    ecny = {
        "base_url": "http://127.0.0.1:9",
        "merchant_id": "EC1",
        "merchant_private_key_hex": "ab" * 32,
        "merchant_public_key_hex": "04" + "cd" * 64,
        "bank_public_key_hex": "04" + "ef" * 64,
        "sm4_key_hex": "01" * 16,
    }
    assert build_connector("ecny", ecny).channel == "ecny"
    assert redacted("ecny", ecny)["merchant_private_key_hex"] == redacted("ecny", ecny)["sm4_key_hex"] == "***"
    for channel, config in (
        ("unionpay", {**unionpay_config, "mer_id": "short"}),
        ("unionpay", {**unionpay_config, "sign_pfx_password": "wrong"}),
        ("ecny", {**ecny, "surprise": 1}),
    ):
        with pytest.raises(Problem) as refused:
            build_connector(channel, config)
        assert refused.value.spec.code == "invalid_channel_config"


def test_a_full_refund_on_the_consumes_beijing_day_is_a_revoke(unionpay_config: dict[str, Any]) -> None:
    consumed = datetime(2026, 12, 6, 15, 59, tzinfo=UTC)  # 23:59 in Beijing
    out_trade_no = uuid7_hex(consumed)

    def refund(minor: int, *, number: str = out_trade_no) -> RefundRequest:
        return RefundRequest(
            out_trade_no=number,
            out_refund_no="re_" + uuid7_hex(consumed),
            refund_minor=minor,
            total_minor=8_888,
            currency="CNY",
        )

    def connector(now: datetime) -> UnionPayConnector:
        return UnionPayConnector(UnionPayConfig.model_validate(unionpay_config), clock=lambda: now)

    same_day = connector(consumed + timedelta(seconds=30))
    assert isinstance(same_day, Revocable)
    assert same_day.revocable(refund(8_888))
    assert not same_day.revocable(refund(8_887))  # partial: 退货
    assert not same_day.revocable(refund(8_888, number="not-a-uuid7-order"))
    # Two minutes later it is the next day in Beijing (the same UTC day): a 退货 refund, the fee is kept.
    assert not connector(consumed + timedelta(minutes=2)).revocable(refund(8_888))


class _RefusingRevokes:
    """A channel whose revoke is refused: UnionPay past its cut-off answers so, which no sandbox here can
    be made to do (the sandbox has no cut-off). Records what the cashier asked."""

    channel = "unionpay"

    def __init__(self, refusal: ChannelError) -> None:
        self.refusal = refusal
        self.asked: list[str] = []

    def revocable(self, request: RefundRequest) -> bool:
        return True

    async def revoke(self, request: RefundRequest) -> RefundResult:
        self.asked.append("revoke")
        raise self.refusal

    async def refund(self, request: RefundRequest) -> RefundResult:
        self.asked.append("refund")
        return RefundResult(status=RefundStatus.PENDING, out_refund_no=request.out_refund_no)


async def test_a_refused_revoke_is_asked_again_as_a_refund_but_an_unknown_one_is_not() -> None:
    request = RefundRequest(
        out_trade_no=uuid7_hex(datetime.now(UTC)),
        out_refund_no="re_1",
        refund_minor=100,
        total_minor=100,
        currency="CNY",
    )
    refused = _RefusingRevokes(ChannelError("UNIONPAY_01", "past the cut-off"))
    assert (await return_money(refused, request)).status is RefundStatus.PENDING  # type: ignore[arg-type]
    assert refused.asked == ["revoke", "refund"]
    unknown = _RefusingRevokes(ChannelError("UNIONPAY_03", "timeout", retryable=True))
    with pytest.raises(ChannelError):  # the revoke may have happened: the poller asks UnionPay, nothing else
        await return_money(unknown, request)  # type: ignore[arg-type]
    assert unknown.asked == ["revoke"]
