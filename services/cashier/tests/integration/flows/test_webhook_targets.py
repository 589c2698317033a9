"""Webhook targets are checked: refused at creation (422), and at delivery on every resolved address, with
the connection pinned to the checked address, redirects not followed and the answer read bounded.

Everything is real (cashier over HTTP, sandboxes, local receivers) except the name→address step of DNS,
replaced for the hostname cases by patching `resolve_host` (this machine has no DNS name that points at
127.0.0.1 other than `localhost`, which is refused by name before any resolution).
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import update

from services.cashier.flows import webhook_targets
from services.cashier.store.tables import merchants

from .conftest import RunningCashier, Sandboxes, WebhookReceiver, approve, paid_payment, qr_payment, wait_for

PRODUCTION_FLAGS = {"webhook_allow_http": False, "webhook_allow_loopback": False}


class _Recorder:
    """A local HTTP server: records every request; answers with `status`, `headers` and `body_bytes` of body."""

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None, body_bytes: int = 2) -> None:
        self.requests: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                recorder.requests.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(body_bytes))
                self.end_headers()
                chunk = b"x" * 65536
                left = body_bytes
                try:
                    while left > 0:
                        self.wfile.write(chunk[: min(left, len(chunk))])
                        left -= len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the cashier stopped reading: that is the point

            do_POST = do_GET = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorders() -> Iterator[Any]:
    started: list[_Recorder] = []

    def start(**kwargs: Any) -> _Recorder:
        recorder = _Recorder(**kwargs)
        started.append(recorder)
        return recorder

    yield start
    for recorder in started:
        recorder.close()


async def _deliveries(cashier: RunningCashier, payment_id: str) -> list[dict[str, Any]]:
    response = await cashier.get(f"/v1/payments/{payment_id}/webhook-deliveries")
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def _set_merchant_url(cashier: RunningCashier, url: str) -> None:
    """A merchant default URL stored before targets were checked (or by a platform operator's script)."""
    async with cashier.engine.begin() as conn:
        await conn.execute(
            update(merchants).where(merchants.c.merchant_id == cashier.merchant_id).values(notify_url=url)
        )


async def _abandoned_delivery(cashier: RunningCashier, payment_id: str) -> dict[str, Any]:
    async def abandoned() -> dict[str, Any] | None:
        found = [d for d in await _deliveries(cashier, payment_id) if d["status"] == "abandoned"]
        return found[0] if found else None

    delivery: dict[str, Any] = await wait_for(abandoned, "the delivery to be refused")
    return delivery


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8002/v1/transfers",
        "https://127.0.0.1:8002/v1/transfers",
        "https://10.0.0.5/hooks",
        "https://192.168.1.20/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]:8443/hooks",
        "https://localhost/hooks",
        "http://shop.example/hooks",
    ],
)
async def test_create_with_an_internal_or_plain_http_notify_url_is_422(
    start_cashier: Any, sandboxes: Sandboxes, url: str
) -> None:
    cashier = await start_cashier(**PRODUCTION_FLAGS)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    body = qr_payment(notify_url=url)
    refused = await cashier.post("/v1/payments", body)
    assert refused.status_code == 422 and refused.json()["code"] == "notify_url_not_allowed", refused.text
    lookup = await cashier.get("/v1/payments", merchant_order_no=body["merchant_order_no"])
    assert lookup.status_code == 200 and lookup.json()["data"] == []  # nothing created
    merchant = await cashier.client.put(f"/v1/admin/merchants/{cashier.merchant_id}", json={"notify_url": url})
    assert merchant.status_code == 422 and merchant.json()["code"] == "notify_url_not_allowed"


async def test_public_https_notify_url_is_accepted(start_cashier: Any, sandboxes: Sandboxes) -> None:
    cashier = await start_cashier(**PRODUCTION_FLAGS)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    created = await cashier.post("/v1/payments", qr_payment(notify_url="https://shop.example/hooks"))
    assert created.status_code == 201, created.text


@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.5", "192.168.1.20", "169.254.169.254", "[::1]"])
async def test_delivery_to_an_internal_address_is_refused_once_and_recorded(
    start_cashier: Any, sandboxes: Sandboxes, recorders: Any, host: str
) -> None:
    """A stored URL naming an internal address (it got in before the rules) is refused at delivery: recorded
    as failed with the reason, abandoned at once (never retried), and nothing reaches the address."""
    internal = recorders()
    cashier = await start_cashier(webhook_allow_http=True, webhook_allow_loopback=False)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    await _set_merchant_url(cashier, f"http://{host}:{internal.port}/v1/transfers")
    payment = await paid_payment(cashier, sandboxes, "alipay", 100)
    delivery = await _abandoned_delivery(cashier, payment["id"])
    assert delivery["attempt_count"] == 1 and delivery["last_status_code"] is None
    assert delivery["last_error"].startswith("target_not_allowed"), delivery
    assert internal.requests == []


async def test_a_name_resolving_to_loopback_is_refused_at_delivery(
    start_cashier: Any, sandboxes: Sandboxes, recorders: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    internal = recorders()
    resolved: list[str] = []

    async def fake_dns(host: str, port: int) -> list[Any]:
        resolved.append(host)
        # One public and one loopback address: a single internal answer is enough to refuse.
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(webhook_targets, "resolve_host", fake_dns)
    cashier = await start_cashier(webhook_allow_http=True, webhook_allow_loopback=False)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    url = f"http://hooks.merchant.example:{internal.port}/hooks"
    created = await cashier.post("/v1/payments", qr_payment(notify_url=url, preferred_channels=["alipay"]))
    assert created.status_code == 201, created.text  # a name: its addresses are checked when sending
    await approve(sandboxes, "alipay", created.json()["attempts"][0]["out_trade_no"])
    await cashier.wait_status(created.json()["id"], "succeeded")
    delivery = await _abandoned_delivery(cashier, created.json()["id"])
    assert "127.0.0.1" in delivery["last_error"] and delivery["attempt_count"] == 1, delivery
    assert resolved and set(resolved) == {"hooks.merchant.example"}
    assert internal.requests == []


async def test_the_connection_goes_to_the_checked_address_with_the_name_as_host(
    start_cashier: Any, sandboxes: Sandboxes, webhook_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinning: the name is resolved once, by us; the request reaches that address and carries the name."""
    answers = iter([[ipaddress.ip_address("127.0.0.1")]])

    async def one_answer_only(host: str, port: int) -> list[Any]:
        return next(answers)  # a second resolution (a rebinding window) would raise StopIteration

    monkeypatch.setattr(webhook_targets, "resolve_host", one_answer_only)
    cashier = await start_cashier()  # dev flags on: loopback receivers allowed
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    assert webhook_receiver.server is not None
    port = webhook_receiver.server.server.server_address[1]
    url = f"http://hooks.merchant.example:{port}/hooks"
    created = await cashier.post("/v1/payments", qr_payment(notify_url=url, preferred_channels=["alipay"]))
    assert created.status_code == 201, created.text
    await approve(sandboxes, "alipay", created.json()["attempts"][0]["out_trade_no"])
    await wait_for(lambda: webhook_receiver.delivered(), "the webhook")
    received = webhook_receiver.delivered()[0]
    assert {k.lower(): v for k, v in received.headers.items()}["host"] == f"hooks.merchant.example:{port}"


async def test_a_redirect_to_an_internal_address_is_not_followed(
    start_cashier: Any, sandboxes: Sandboxes, recorders: Any
) -> None:
    internal = recorders()
    redirecting = recorders(status=307, headers={"Location": f"http://10.0.0.5:{internal.port}/v1/transfers"})
    also_internal = recorders(status=302, headers={"Location": f"http://127.0.0.1:{internal.port}/v1/transfers"})
    cashier = await start_cashier()  # loopback allowed: the merchant's receivers run here
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    for receiver in (redirecting, also_internal):
        await _set_merchant_url(cashier, f"http://127.0.0.1:{receiver.port}/hooks")
        payment = await paid_payment(cashier, sandboxes, "alipay", 100)

        async def tried_twice(payment_id: str = payment["id"]) -> bool:
            return any(d["attempt_count"] >= 2 for d in await _deliveries(cashier, payment_id))

        await wait_for(tried_twice, "two delivery tries")
        delivery = (await _deliveries(cashier, payment["id"]))[0]
        assert delivery["status"] == "pending" and delivery["last_error"].startswith("HTTP 30"), delivery
    assert internal.requests == []
    assert len(redirecting.requests) >= 2 and len(also_internal.requests) >= 2


async def test_a_huge_answer_is_read_bounded(start_cashier: Any, sandboxes: Sandboxes, recorders: Any) -> None:
    """A receiver answering 200 with 50 MiB: the cashier reads at most webhook_response_max_bytes and moves on."""
    huge = recorders(status=200, body_bytes=50 * 1024 * 1024)
    cashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    await _set_merchant_url(cashier, f"http://127.0.0.1:{huge.port}/hooks")
    payment = await paid_payment(cashier, sandboxes, "alipay", 100)

    async def delivered() -> bool:
        return any(d["status"] == "delivered" for d in await _deliveries(cashier, payment["id"]))

    await wait_for(delivered, "the delivery to be acknowledged")
    assert len(huge.requests) == 1
