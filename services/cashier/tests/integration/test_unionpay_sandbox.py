"""The UnionPay connector against the real UnionPay sandbox server, over real HTTP with real certificates.

The sandbox runs as `python -m sandboxes.unionpay` on a free port and generates its own root →
middle → signing chain; a merchant is registered through its control API (the sandbox issues the
merchant PFX). Notifications go to a real HTTP receiver that, like a merchant, verifies each one
with the connector and answers 200 only if it is genuine. The payer's card page is driven over HTTP.
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from html import unescape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
import uuid_utils

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
from services.cashier.connectors.unionpay import UnionPayConfig, UnionPayConnector
from services.cashier.domain.payments import PaymentScene

SUCCESS_CARD, DECLINED_CARD, UNKNOWN_CARD = "6216261000000000018", "6216261000000000026", "6216261000000000034"


class Receiver:
    """The merchant's backUrl: 200 for a notification the connector verifies, 400 otherwise.

    `refusals[path] = n` answers the first n deliveries to that path with 500 (to see the retries).
    """

    def __init__(self) -> None:
        self.verify: Callable[[bytes], Notification] | None = None
        self.received: list[tuple[str, bytes, int]] = []
        self.refusals: dict[str, int] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver._answer(self.path, body)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _answer(self, path: str, body: bytes) -> int:
        with self._lock:
            status = 200
            if self.refusals.get(path, 0) > 0:
                self.refusals[path] -= 1
                status = 500
            else:
                try:
                    assert self.verify is not None
                    self.verify(body)
                except InvalidSignature:
                    status = 400
            self.received.append((path, body, status))
            return status

    def url(self, name: str) -> str:
        return f"{self.base_url}/notify/{name}"

    def accepted(self, name: str) -> list[bytes]:
        with self._lock:
            return [b for p, b, s in self.received if p == f"/notify/{name}" and s == 200]

    def statuses(self, name: str) -> list[int]:
        with self._lock:
            return [s for p, _, s in self.received if p == f"/notify/{name}"]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    env = {
        "JUHE_DATA_DIR": str(tmp_path_factory.mktemp("unionpay")),
        "JUHE_SANDBOX_NOTIFY_SCALE": "0.001",
        "JUHE_SANDBOX_UNIONPAY_UNKNOWN_QUERIES": "2",
    }
    with SandboxProcess("sandboxes.unionpay", port_env="JUHE_SANDBOX_UNIONPAY_PORT", env=env) as process:
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


def config_of(sandbox: SandboxProcess, merchant: dict[str, Any], **changes: Any) -> UnionPayConfig:
    fields = {
        k: merchant[k]
        for k in (
            "mer_id",
            "sign_pfx_base64",
            "sign_pfx_password",
            "root_cert_pem",
            "middle_cert_pem",
            "validate_cn_name",
        )
    }
    return UnionPayConfig(**{"base_url": sandbox.base_url, "read_timeout_seconds": 5.0, **fields, **changes})


@pytest.fixture
async def connector(
    sandbox: SandboxProcess, merchant: dict[str, Any], receiver: Receiver
) -> AsyncIterator[UnionPayConnector]:
    c = UnionPayConnector(config_of(sandbox, merchant))
    receiver.verify = lambda body: c.parse_notification({}, body)
    yield c
    await c.aclose()


def new_no(prefix: str = "") -> str:
    return f"{prefix}{uuid_utils.uuid7().hex}"


async def prepay(
    connector: UnionPayConnector, receiver: Receiver, scene: PaymentScene, amount: int = 8888
) -> tuple[str, Any]:
    out_trade_no = new_no()
    result = await connector.prepay(
        PrepayRequest(
            out_trade_no=out_trade_no,
            amount_minor=amount,
            currency="CNY",
            description="测试商品",
            scene=scene,
            notify_url=receiver.url(out_trade_no),
            return_url="http://127.0.0.1:9/return",
        )
    )
    return out_trade_no, result.payer_action


def hidden_inputs(html: str) -> dict[str, str]:
    return {unescape(k): unescape(v) for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', html)}


async def open_card_page(http: httpx.AsyncClient, action: dict[str, Any]) -> str:
    """What the browser does with the auto-submit form: POST it, follow the 303 to the card page."""
    form = action["form"]
    assert hidden_inputs(action["html"]) == form["fields"]
    response = await http.post(form["action"], data=form["fields"], follow_redirects=True)
    assert response.status_code == 200 and 'id="card_no"' in response.text, response.text[:300]
    return str(response.url)


async def pay_on_page(http: httpx.AsyncClient, page_url: str, card: str, sms: str = "111111") -> httpx.Response:
    return await http.post(
        page_url, data={"card_no": card, "expiry": "1229", "cvn2": "123", "phone": "13552535506", "sms_code": sms}
    )


async def test_web_consume_through_the_card_page(connector: UnionPayConnector, receiver: Receiver) -> None:
    out_trade_no, action = await prepay(connector, receiver, PaymentScene.PAGE)
    assert action["type"] == "form" and action["form"]["fields"]["channelType"] == "07"
    async with httpx.AsyncClient() as http:
        page = await open_card_page(http, action)
        assert (await connector.query(out_trade_no)).status is TradeStatus.NOT_FOUND  # 34 until the payer submits
        wrong = await pay_on_page(http, page, SUCCESS_CARD, sms="000000")
        assert wrong.status_code == 400 and "SMS" in wrong.text
        assert (await connector.query(out_trade_no)).status is TradeStatus.NOT_FOUND
        done = await pay_on_page(http, page, SUCCESS_CARD)
    assert done.status_code == 200 and 'id="front"' in done.text
    front = connector.parse_return(hidden_inputs(done.text))  # the signed frontUrl POST
    assert front.status is TradeStatus.SUCCEEDED and front.out_trade_no == out_trade_no
    await eventually(lambda: bool(receiver.accepted(out_trade_no)), "the back notification")
    note = connector.parse_notification({}, receiver.accepted(out_trade_no)[0])
    assert note.kind is NotificationKind.PAYMENT and note.payment is not None
    assert note.payment.status is TradeStatus.SUCCEEDED and note.payment.amount_minor == 8888
    queried = await connector.query(out_trade_no)
    assert queried.status is TradeStatus.SUCCEEDED and queried.amount_minor == 8888
    assert queried.channel_trade_no == note.payment.channel_trade_no and queried.paid_at is not None


async def test_mobile_consume_declined_card(connector: UnionPayConnector, receiver: Receiver) -> None:
    out_trade_no, action = await prepay(connector, receiver, PaymentScene.H5)
    assert action["form"]["fields"]["channelType"] == "08"
    async with httpx.AsyncClient() as http:
        await pay_on_page(http, await open_card_page(http, action), DECLINED_CARD)
    assert (await connector.query(out_trade_no)).status is TradeStatus.FAILED
    await eventually(lambda: bool(receiver.accepted(out_trade_no)), "the failure notification")
    note = connector.parse_notification({}, receiver.accepted(out_trade_no)[0])
    assert note.payment is not None and note.payment.status is TradeStatus.FAILED


async def test_unknown_outcome_03_resolves_by_query(connector: UnionPayConnector, receiver: Receiver) -> None:
    out_trade_no, action = await prepay(connector, receiver, PaymentScene.PAGE, amount=1999)
    async with httpx.AsyncClient() as http:
        await pay_on_page(http, await open_card_page(http, action), UNKNOWN_CARD)
    first = await connector.query(out_trade_no)
    assert first.status is TradeStatus.PENDING and first.detail and first.detail.startswith("03")
    assert receiver.accepted(out_trade_no) == []  # nothing is notified while the outcome is unknown
    final = await connector.query_until_final(out_trade_no, backoff_seconds=(0.01, 0.01, 0.01))
    assert final.status is TradeStatus.SUCCEEDED and final.amount_minor == 1999
    await eventually(lambda: bool(receiver.accepted(out_trade_no)), "the notification after resolution")


async def test_app_consume_returns_tn(
    connector: UnionPayConnector, receiver: Receiver, sandbox: SandboxProcess, merchant: dict[str, Any]
) -> None:
    out_trade_no, action = await prepay(connector, receiver, PaymentScene.APP, amount=500)
    assert action["type"] == "app" and action["tn"].isdigit()
    async with httpx.AsyncClient() as http:  # the UnionPay app takes the card page for this tn
        page = f"{sandbox.base_url}/pay/consume/{action['tn']}"
        assert 'id="card_no"' in (await http.get(page)).text
        await pay_on_page(http, page, SUCCESS_CARD)
    assert (await connector.query(out_trade_no)).status is TradeStatus.SUCCEEDED


async def paid_order(
    connector: UnionPayConnector, receiver: Receiver, sandbox: SandboxProcess, merchant: dict[str, Any], amount: int
) -> str:
    """A consume paid by the payer without a browser (the control API's pay = the card page's submit)."""
    out_trade_no, action = await prepay(connector, receiver, PaymentScene.PAGE, amount=amount)
    async with httpx.AsyncClient() as http:
        await http.post(action["form"]["action"], data=action["form"]["fields"])
        paid = await http.post(
            f"{sandbox.base_url}/control/orders/{merchant['mer_id']}/{out_trade_no}/pay", json={"card_no": SUCCESS_CARD}
        )
        assert paid.status_code == 200 and paid.json()["status"] == "success"
    return out_trade_no


def refund_request(out_trade_no: str, refund: int, total: int, receiver: Receiver) -> RefundRequest:
    out_refund_no = new_no("re_")
    return RefundRequest(
        out_trade_no=out_trade_no,
        out_refund_no=out_refund_no,
        refund_minor=refund,
        total_minor=total,
        currency="CNY",
        notify_url=receiver.url(out_refund_no),
    )


async def test_partial_refunds_then_over_refund(
    connector: UnionPayConnector, receiver: Receiver, sandbox: SandboxProcess, merchant: dict[str, Any]
) -> None:
    out_trade_no = await paid_order(connector, receiver, sandbox, merchant, 1000)
    first = refund_request(out_trade_no, 300, 1000, receiver)
    accepted = await connector.refund(first)
    assert accepted.status is RefundStatus.PENDING  # 00 = accepted
    again = await connector.refund(first)  # the same refund again: 12 duplicate → its query result
    assert again.status is RefundStatus.SUCCEEDED and again.refund_minor == 300
    await eventually(lambda: bool(receiver.accepted(first.out_refund_no)), "the refund notification")
    note = connector.parse_notification({}, receiver.accepted(first.out_refund_no)[0])
    assert note.kind is NotificationKind.REFUND and note.refund is not None
    assert (note.refund.status, note.refund.out_refund_no, note.refund.out_trade_no, note.refund.refund_minor) == (
        RefundStatus.SUCCEEDED,
        first.out_refund_no,
        out_trade_no,
        300,
    )
    second = refund_request(out_trade_no, 700, 1000, receiver)
    await connector.refund(second)
    done = await connector.query_refund(second.out_refund_no, out_trade_no)
    assert done.status is RefundStatus.SUCCEEDED and done.refund_minor == 700
    with pytest.raises(ChannelError):
        await connector.refund(refund_request(out_trade_no, 1, 1000, receiver))
    assert (await connector.query_refund(new_no("re_"), out_trade_no)).status is RefundStatus.NOT_FOUND
    assert (await connector.query(out_trade_no)).status is TradeStatus.SUCCEEDED  # a refund is its own order


async def test_revoke_same_day_full_only(
    connector: UnionPayConnector, receiver: Receiver, sandbox: SandboxProcess, merchant: dict[str, Any]
) -> None:
    out_trade_no = await paid_order(connector, receiver, sandbox, merchant, 2500)
    with pytest.raises(ChannelError) as partial:
        await connector.revoke(refund_request(out_trade_no, 100, 2500, receiver))
    assert partial.value.code == "REVOKE_FULL_ONLY"
    revoke = refund_request(out_trade_no, 2500, 2500, receiver)
    assert (await connector.revoke(revoke)).status is RefundStatus.PENDING
    assert (await connector.query_refund(revoke.out_refund_no, out_trade_no)).status is RefundStatus.SUCCEEDED
    with pytest.raises(ChannelError):  # nothing is left to return
        await connector.refund(refund_request(out_trade_no, 1, 2500, receiver))
    # After a partial refund, a revoke is refused by UnionPay.
    other = await paid_order(connector, receiver, sandbox, merchant, 900)
    await connector.refund(refund_request(other, 100, 900, receiver))
    with pytest.raises(ChannelError) as refused:
        await connector.revoke(refund_request(other, 900, 900, receiver))
    assert refused.value.code == "UNIONPAY_01"


async def test_notifications_retried_and_forgeries_refused(
    connector: UnionPayConnector, receiver: Receiver, sandbox: SandboxProcess
) -> None:
    out_trade_no, action = await prepay(connector, receiver, PaymentScene.PAGE, amount=42)
    receiver.refusals[f"/notify/{out_trade_no}"] = 3
    async with httpx.AsyncClient() as http:
        await pay_on_page(http, await open_card_page(http, action), SUCCESS_CARD)
    await eventually(lambda: bool(receiver.accepted(out_trade_no)), "the retried notification")
    assert receiver.statuses(out_trade_no) == [500, 500, 500, 200]
    async with httpx.AsyncClient() as http:
        log = (await http.get(f"{sandbox.base_url}/control/notifications", params={"subject": out_trade_no})).json()
    assert [d["attempt"] for d in log["deliveries"]] == [1, 2, 3, 4]
    genuine = dict(parse_qsl(receiver.accepted(out_trade_no)[0].decode(), keep_blank_values=True))
    forged = urlencode({**genuine, "txnAmt": "4200"}).encode()
    with pytest.raises(InvalidSignature):
        connector.parse_notification({}, forged)
    with pytest.raises(InvalidSignature):
        connector.parse_notification(
            {}, urlencode({**genuine, "signPubKeyCert": genuine["signPubKeyCert"].replace("MII", "MIJ", 1)}).encode()
        )


async def test_production_cn_rule_refuses_the_test_certificate(
    sandbox: SandboxProcess, merchant: dict[str, Any]
) -> None:
    strict = UnionPayConnector(config_of(sandbox, merchant, validate_cn_name=True))
    try:
        with pytest.raises(InvalidSignature, match="CN"):
            await strict.query(new_no())
    finally:
        await strict.aclose()


async def test_encryption_key_update(connector: UnionPayConnector, sandbox: SandboxProcess) -> None:
    pem = await connector.update_encryption_cert()
    async with httpx.AsyncClient() as http:
        assert pem == (await http.get(f"{sandbox.base_url}/control/certificates")).json()["encrypt_cert_pem"]
    assert connector.encrypt_cert_pem == pem


async def test_settlement_file_lists_the_day(
    connector: UnionPayConnector, receiver: Receiver, sandbox: SandboxProcess, merchant: dict[str, Any]
) -> None:
    out_trade_no = await paid_order(connector, receiver, sandbox, merchant, 10000)
    refund = refund_request(out_trade_no, 2000, 10000, receiver)
    await connector.refund(refund)
    today = datetime.now(UTC).astimezone(timezone(timedelta(hours=8)))
    bill = await connector.download_bill(today.date())
    payments = {line.out_trade_no: line for line in bill.lines if line.kind is BillLineKind.PAYMENT}
    refunds = {line.out_refund_no: line for line in bill.lines if line.kind is BillLineKind.REFUND}
    assert payments[out_trade_no].amount_minor == 10000 and payments[out_trade_no].fee_minor == 60
    line = refunds[refund.out_refund_no]  # the parser restores Juhe's `re_` prefix
    assert (line.amount_minor, line.out_trade_no, line.fee_minor) == (2000, out_trade_no, 0)
    assert bill.raw_sha1 and len(bill.raw_sha1) == 40
    # Injected discrepancies show in the next download: exactly those three.
    ghost = new_no()
    async with httpx.AsyncClient() as http:
        url = f"{sandbox.base_url}/control/bills/{today.date().isoformat()}/discrepancies"
        for item in (
            {"kind": "drop_line", "out_trade_no": out_trade_no, "out_refund_no": refund.out_refund_no},
            {"kind": "change_amount", "out_trade_no": out_trade_no, "amount_minor": 9999},
            {"kind": "report_success", "out_trade_no": ghost, "amount_minor": 777},
        ):
            assert (await http.post(url, json=item)).status_code == 200
        try:
            changed = await connector.download_bill(today.date())
        finally:
            await http.delete(url)
    lines = {(line.kind, line.out_refund_no or line.out_trade_no): line.amount_minor for line in changed.lines}
    assert (BillLineKind.REFUND, refund.out_refund_no) not in lines
    assert lines[(BillLineKind.PAYMENT, out_trade_no)] == 9999 and lines[(BillLineKind.PAYMENT, ghost)] == 777
    assert len(changed.lines) == len(bill.lines)  # one dropped, one added


async def test_faults_fail_and_dark(
    connector: UnionPayConnector, sandbox: SandboxProcess, merchant: dict[str, Any]
) -> None:
    async with httpx.AsyncClient() as http:
        await http.put(f"{sandbox.base_url}/control/faults", json={"error_rate": 1.0})
        try:
            with pytest.raises(ChannelError) as failed:
                await connector.query(new_no())
            assert failed.value.retryable and failed.value.code == "UNIONPAY_03"
        finally:
            await http.put(f"{sandbox.base_url}/control/faults", json={"error_rate": 0.0})
        quick = UnionPayConnector(config_of(sandbox, merchant, read_timeout_seconds=0.5))
        await http.put(f"{sandbox.base_url}/control/faults", json={"dark": True})
        try:
            with pytest.raises(ChannelUnavailable):
                await quick.query(new_no())
        finally:
            await http.put(f"{sandbox.base_url}/control/faults", json={"dark": False})
            await quick.aclose()
    assert (await connector.query(new_no())).status is TradeStatus.NOT_FOUND
