"""The e-CNY connector against the real e-CNY bank sandbox over real HTTP, SM2/SM3/SM4 on both sides.

The merchant is registered through the sandbox's control API (the bank issues the merchant's SM2
key pair and SM4 key); the payer uses the sandbox's wallet-app page; notifications go to a real HTTP
receiver that verifies them with the connector before acknowledging.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from libs.common.testing.waiting import eventually
from sandboxes.common.testing import SandboxProcess
from services.cashier.connectors.base import (
    BillLineKind,
    ChannelError,
    ChannelUnavailable,
    InvalidSignature,
    Notification,
    NotificationKind,
    PrepayRequest,
    RefundRequest,
    RefundStatus,
    TradeStatus,
)
from services.cashier.connectors.ecny import EcnyConfig, EcnyConnector
from services.cashier.domain.payments import PaymentScene


class Receiver:
    """The merchant's notify URL: `{"code":"SUCCESS"}` for a verified notification, 401 otherwise."""

    def __init__(self) -> None:
        self.verify: Callable[[dict[str, str], bytes], Notification] | None = None
        self.received: list[tuple[str, dict[str, str], bytes, int]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = dict(self.headers.items())
                try:
                    assert receiver.verify is not None
                    receiver.verify(headers, body)
                    status, reply = 200, b'{"code":"SUCCESS"}'
                except InvalidSignature:
                    status, reply = 401, b'{"code":"FAIL"}'
                with receiver._lock:
                    receiver.received.append((self.path, headers, body, status))
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"{self.base_url}/notify/{name}"

    def accepted(self, name: str) -> list[tuple[dict[str, str], bytes]]:
        with self._lock:
            return [(h, b) for p, h, b, s in self.received if p == f"/notify/{name}" and s == 200]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    env = {"JUHE_DATA_DIR": str(tmp_path_factory.mktemp("ecny")), "JUHE_SANDBOX_NOTIFY_SCALE": "0.001"}
    with SandboxProcess("sandboxes.ecny", port_env="JUHE_SANDBOX_ECNY_PORT", env=env) as process:
        yield process


@pytest.fixture(scope="module")
def merchant(sandbox: SandboxProcess) -> dict[str, Any]:
    response = httpx.post(f"{sandbox.base_url}/control/merchants", json={})
    response.raise_for_status()
    return dict(response.json())


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def config_of(sandbox: SandboxProcess, merchant: dict[str, Any], **changes: Any) -> EcnyConfig:
    return EcnyConfig(**{"base_url": sandbox.base_url, **merchant, **changes})


@pytest.fixture
async def connector(
    sandbox: SandboxProcess, merchant: dict[str, Any], receiver: Receiver
) -> AsyncIterator[EcnyConnector]:
    c = EcnyConnector(config_of(sandbox, merchant))
    receiver.verify = c.parse_notification
    yield c
    await c.aclose()


async def create(
    connector: EcnyConnector,
    receiver: Receiver,
    amount: int,
    scene: PaymentScene = PaymentScene.NATIVE_QR,
) -> tuple[str, dict[str, Any]]:
    out_trade_no = uuid.uuid4().hex
    result = await connector.prepay(
        PrepayRequest(
            out_trade_no=out_trade_no,
            amount_minor=amount,
            currency="CNY",
            description="数字人民币测试",
            scene=scene,
            notify_url=receiver.url(out_trade_no),
        )
    )
    return out_trade_no, result.payer_action


async def wallet(http: httpx.AsyncClient, url: str, action: str, level: int = 4) -> httpx.Response:
    """The payer scans the QR code (opens the wallet page) and pays with a wallet of `level`, or declines."""
    page = await http.get(url)
    assert page.status_code == 200 and 'id="pay"' in page.text and "4 类钱包" in page.text
    return await http.post(url.split("?")[0], data={"action": action, "wallet_level": str(level)})


async def test_qr_payment_refund_and_bill(
    connector: EcnyConnector, receiver: Receiver, sandbox: SandboxProcess
) -> None:
    out_trade_no, action = await create(connector, receiver, 12_345)
    assert action["type"] == "qr_code"
    assert (await connector.query(out_trade_no)).status is TradeStatus.PENDING
    async with httpx.AsyncClient() as http:
        paid = await wallet(http, action["qr_code"], "pay", level=4)
    assert paid.status_code == 200 and 'id="status">SUCCEEDED' in paid.text
    await eventually(lambda: bool(receiver.accepted(out_trade_no)), "the payment notification")
    headers, body = receiver.accepted(out_trade_no)[0]
    note = connector.parse_notification(headers, body)
    assert note.kind is NotificationKind.PAYMENT and note.payment is not None
    assert note.payment.status is TradeStatus.SUCCEEDED and note.payment.amount_minor == 12_345
    assert note.payment.detail and "wallet=0040000000000004 level=4" in note.payment.detail  # SM4-decrypted
    queried = await connector.query(out_trade_no)
    assert queried.status is TradeStatus.SUCCEEDED and queried.paid_at is not None
    refund_no = uuid.uuid4().hex
    refund = RefundRequest(
        out_trade_no=out_trade_no,
        out_refund_no=refund_no,
        refund_minor=2_345,
        total_minor=12_345,
        currency="CNY",
        notify_url=receiver.url(refund_no),
    )
    done = await connector.refund(refund)
    assert done.status is RefundStatus.SUCCEEDED and done.refund_minor == 2_345
    assert (await connector.refund(refund)).channel_refund_no == done.channel_refund_no  # idempotent
    await eventually(lambda: bool(receiver.accepted(refund_no)), "the refund notification")
    refund_note = connector.parse_notification(*receiver.accepted(refund_no)[0])
    assert refund_note.refund is not None and refund_note.refund.status is RefundStatus.SUCCEEDED
    assert (await connector.query_refund(refund_no, out_trade_no)).status is RefundStatus.SUCCEEDED
    assert (await connector.query_refund(uuid.uuid4().hex, out_trade_no)).status is RefundStatus.NOT_FOUND
    with pytest.raises(ChannelError) as over:
        await connector.refund(
            RefundRequest(
                out_trade_no=out_trade_no,
                out_refund_no=uuid.uuid4().hex,
                refund_minor=10_001,
                total_minor=12_345,
                currency="CNY",
            )
        )
    assert over.value.code == "REFUND_AMOUNT_EXCEEDED"
    today = datetime.now(UTC).astimezone(timezone(timedelta(hours=8))).date()
    bill = await connector.download_bill(today)
    payment_lines = [line for line in bill.lines if line.out_trade_no == out_trade_no]
    assert {(line.kind, line.amount_minor) for line in payment_lines} == {
        (BillLineKind.PAYMENT, 12_345),
        (BillLineKind.REFUND, 2_345),
    }
    ghost = uuid.uuid4().hex
    async with httpx.AsyncClient() as http:
        url = f"{sandbox.base_url}/control/bills/{today.isoformat()}/discrepancies"
        for item in (
            {"kind": "drop_line", "out_trade_no": out_trade_no, "out_refund_no": refund_no},
            {"kind": "change_amount", "out_trade_no": out_trade_no, "amount_minor": 12_000},
            {"kind": "report_success", "out_trade_no": ghost, "amount_minor": 300},
        ):
            assert (await http.post(url, json=item)).status_code == 200
        try:
            changed = await connector.download_bill(today)
        finally:
            await http.delete(url)
    lines = {(line.kind, line.out_refund_no or line.out_trade_no): line.amount_minor for line in changed.lines}
    assert (BillLineKind.REFUND, refund_no) not in lines
    assert lines[(BillLineKind.PAYMENT, out_trade_no)] == 12_000 and lines[(BillLineKind.PAYMENT, ghost)] == 300


async def test_level_4_wallet_over_its_limit_is_declined(connector: EcnyConnector, receiver: Receiver) -> None:
    out_trade_no, action = await create(connector, receiver, 200_001, scene=PaymentScene.H5)  # ¥2,000.01 > ¥2,000
    assert action["type"] == "redirect" and action["deep_link"].startswith("ecny://pay?")
    async with httpx.AsyncClient() as http:
        declined = await wallet(http, action["url"], "pay", level=4)
    assert 'id="status">FAILED' in declined.text and "WALLET_LIMIT_EXCEEDED" in declined.text
    result = await connector.query(out_trade_no)
    assert result.status is TradeStatus.FAILED and result.detail and "WALLET_LIMIT_EXCEEDED" in result.detail
    await eventually(lambda: bool(receiver.accepted(out_trade_no)), "the failure notification")
    # The same amount from a level-2 wallet (¥50,000 per payment) goes through.
    other, action2 = await create(connector, receiver, 200_001)
    async with httpx.AsyncClient() as http:
        assert 'id="status">SUCCEEDED' in (await wallet(http, action2["qr_code"], "pay", level=2)).text
    assert (await connector.query(other)).status is TradeStatus.SUCCEEDED


async def test_daily_limit_and_decline(
    connector: EcnyConnector, receiver: Receiver, sandbox: SandboxProcess, merchant: dict[str, Any]
) -> None:
    """Level 3: ¥5,000 per payment, ¥10,000 a day: two of ¥4,000 pass, the third is declined."""
    results = []
    async with httpx.AsyncClient() as http:
        for _ in range(3):
            out_trade_no, _action = await create(connector, receiver, 400_000)
            response = await http.post(
                f"{sandbox.base_url}/control/orders/{merchant['merchant_id']}/{out_trade_no}/pay",
                json={"wallet_level": 3},
            )
            results.append((response.json()["status"], response.json().get("failure_code")))
        assert results == [("SUCCEEDED", None), ("SUCCEEDED", None), ("FAILED", "WALLET_LIMIT_EXCEEDED")]
        out_trade_no, action = await create(connector, receiver, 100)
        assert 'id="status">FAILED' in (await wallet(http, action["qr_code"], "decline")).text
    assert (await connector.query(out_trade_no)).detail == "FAILED PAYER_DECLINED"


async def test_forged_notification_and_foreign_signatures_refused(
    connector: EcnyConnector, receiver: Receiver, sandbox: SandboxProcess
) -> None:
    out_trade_no, action = await create(connector, receiver, 500)
    async with httpx.AsyncClient() as http:
        await wallet(http, action["qr_code"], "pay", level=1)
    await eventually(lambda: bool(receiver.accepted(out_trade_no)), "the notification")
    headers, body = receiver.accepted(out_trade_no)[0]
    forged = json.loads(body)
    forged["data"]["amount_minor"] = 5
    with pytest.raises(InvalidSignature):
        connector.parse_notification(headers, json.dumps(forged, separators=(",", ":")).encode())
    with pytest.raises(InvalidSignature):
        connector.parse_notification({**headers, "Ecny-Signature": "0" * 128}, body)
    # A connector that trusts another bank key refuses every answer of this bank.
    async with httpx.AsyncClient() as http:
        other = (await http.post(f"{sandbox.base_url}/control/merchants", json={})).json()
    stranger = EcnyConnector(config_of(sandbox, {**other, "bank_public_key_hex": other["merchant_public_key_hex"]}))
    try:
        with pytest.raises(InvalidSignature):
            await stranger.query(out_trade_no)
    finally:
        await stranger.aclose()


async def test_close_and_unknown_order(connector: EcnyConnector, receiver: Receiver) -> None:
    assert (await connector.query(uuid.uuid4().hex)).status is TradeStatus.NOT_FOUND
    out_trade_no, _ = await create(connector, receiver, 700)
    await connector.close(out_trade_no)
    assert (await connector.query(out_trade_no)).status is TradeStatus.CLOSED


async def test_faults(connector: EcnyConnector, sandbox: SandboxProcess, merchant: dict[str, Any]) -> None:
    async with httpx.AsyncClient() as http:
        await http.put(f"{sandbox.base_url}/control/faults", json={"error_rate": 1.0})
        try:
            with pytest.raises(ChannelUnavailable):
                await connector.query(uuid.uuid4().hex)
        finally:
            await http.put(f"{sandbox.base_url}/control/faults", json={"error_rate": 0.0})
        quick = EcnyConnector(config_of(sandbox, merchant, read_timeout_seconds=0.5))
        await http.put(f"{sandbox.base_url}/control/faults", json={"dark": True})
        try:
            with pytest.raises(ChannelUnavailable):
                await quick.query(uuid.uuid4().hex)
        finally:
            await http.put(f"{sandbox.base_url}/control/faults", json={"dark": False})
            await quick.aclose()
    assert re.fullmatch(r"[0-9a-f]{128}", merchant["bank_public_key_hex"])
