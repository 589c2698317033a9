"""Harness for the cashier's end-to-end tests: real PostgreSQL, broker, sandboxes and HTTP.

* The WeChat Pay and Alipay sandboxes run as `python -m sandboxes.<channel>` subprocesses (one per
  session, notification schedule compressed by JUHE_SANDBOX_NOTIFY_SCALE).
* The cashier runs in this event loop under a real uvicorn server on a free port (lifespan on, so
  its worker loops run), with a fresh migrated database per test.
* Channel notifications reach the cashier through a recording tap (a tiny forwarding HTTP server),
  so a test can replay the exact signed bytes a channel sent.
* Merchant webhooks go to a real local HTTP receiver that records headers and bodies.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from libs.common.embedded import free_port
from libs.common.outbox_tables import outbox
from libs.common.testing.infra import serve_app
from libs.common.testing.waiting import eventually
from sandboxes.common.testing import SandboxProcess
from services.cashier.app import create_app
from services.cashier.context import cashier_context
from services.cashier.flows.context import Cashier

WAIT_SECONDS_MAX = 20.0
WECHAT_MCHID = "1900000209"
WECHAT_APPID = "wxd678efh567hg6787"


async def wait_for(condition: Callable[[], Any], what: str, timeout_seconds: float = WAIT_SECONDS_MAX) -> Any:
    """`eventually()` (libs/common/testing/waiting.py) with these flows' bound: an (async or sync) condition
    polled until truthy, its value returned."""
    return await eventually(condition, what, timeout_seconds=timeout_seconds)


async def wait_payment_status(
    read: Callable[[str], Awaitable[dict[str, Any]]],
    payment_id: str,
    status: str,
    timeout_seconds: float = WAIT_SECONDS_MAX,
) -> dict[str, Any]:
    """Poll `read(payment_id)` (the API's view) until the payment has `status`; bounded."""

    async def reached() -> dict[str, Any] | None:
        payment = await read(payment_id)
        return payment if payment["status"] == status else None

    result: dict[str, Any] = await wait_for(reached, f"payment {payment_id} to be {status}", timeout_seconds)
    return result


# ---------------------------------------------------------------------------------------- sandboxes


@dataclass
class Sandboxes:
    wechat: SandboxProcess
    alipay: SandboxProcess
    data_dir: Path
    wechat_merchant: dict[str, Any]
    alipay_app: dict[str, Any]

    def wechat_config(self, **overrides: Any) -> dict[str, Any]:
        m = self.wechat_merchant
        return {
            "base_url": self.wechat.base_url,
            "mchid": WECHAT_MCHID,
            "appid": WECHAT_APPID,
            "merchant_private_key_pem": m["merchant_private_key_pem"],
            "merchant_cert_serial": m["merchant_cert_serial"],
            "platform_public_key_pem": m["platform_public_key_pem"],
            "platform_public_key_id": m["platform_public_key_id"],
            "apiv3_key": m["apiv3_key"],
            "connect_timeout_seconds": 1.0,
            "read_timeout_seconds": 1.5,
            **overrides,
        }

    def alipay_config(self, **overrides: Any) -> dict[str, Any]:
        a = self.alipay_app
        return {
            "gateway_url": self.alipay.base_url + "/gateway.do",
            "app_id": a["app_id"],
            "app_private_key_pem": a["app_private_key_pem"],
            "alipay_public_key_pem": a["alipay_public_key_pem"],
            "seller_id": a["seller_id"],
            "connect_timeout_seconds": 1.0,
            "read_timeout_seconds": 1.5,
            **overrides,
        }


@pytest.fixture(scope="session")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandboxes]:
    data_dir = tmp_path_factory.mktemp("cashier-sandboxes")
    env = {
        "JUHE_DATA_DIR": str(data_dir),
        "JUHE_SANDBOX_NOTIFY_SCALE": "0.001",
        "JUHE_SANDBOX_WECHATPAY_REFUND_AUTO_SECONDS": "-1",
    }
    wechat = SandboxProcess("sandboxes.wechatpay", port_env="JUHE_SANDBOX_WECHATPAY_PORT", env=env)
    alipay = SandboxProcess("sandboxes.alipay", port_env="JUHE_SANDBOX_ALIPAY_PORT", env=env)
    wechat.start()
    try:
        alipay.start()
        try:
            merchant = httpx.post(
                wechat.base_url + "/control/merchants",
                json={"mchid": WECHAT_MCHID, "appid": WECHAT_APPID, "generate_key_pair": True},
            )
            merchant.raise_for_status()
            app = httpx.post(alipay.base_url + "/control/apps", json={})
            app.raise_for_status()
            yield Sandboxes(wechat, alipay, data_dir, merchant.json(), app.json())
        finally:
            alipay.stop()
    finally:
        wechat.stop()


@pytest.fixture
async def clean_faults(sandboxes: Sandboxes) -> AsyncIterator[None]:
    """Faults are per sandbox process (shared by the session): always reset them after a test."""
    calm = {
        "error_rate": 0.0,
        "dark": False,
        "latency_ms": 0,
        "duplicate_notifications": False,
        "out_of_order_notifications": False,
    }
    yield
    async with httpx.AsyncClient() as client:
        for sandbox in (sandboxes.wechat, sandboxes.alipay):
            await client.put(sandbox.base_url + "/control/faults", json=calm)


# ------------------------------------------------------------------------------------- HTTP helpers


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class _Server:
    def __init__(self, handle: Callable[[str, dict[str, str], bytes], tuple[int, bytes, str]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, payload, content_type = handle(self.path, {k: v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class WebhookReceiver:
    """A merchant's webhook endpoint. `fail_first` answers 500 to that many deliveries first."""

    fail_first: int = 0
    received: list[Received] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    server: _Server | None = None

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, str]:
        with self._lock:
            status = 500 if self.fail_first > 0 else 200
            self.fail_first = max(0, self.fail_first - 1)
            self.answered.append(status)
            if status == 200:
                self.received.append(Received(path, headers, body))
            return status, b"ok", "text/plain"

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.base_url + "/hooks"

    def delivered(self) -> list[Received]:
        with self._lock:
            return list(self.received)


@dataclass
class NotificationTap:
    """Stands between the channels and the cashier: forwards every notification and keeps a copy."""

    target: str = ""
    hold: bool = False  # keep (and refuse) notifications instead of forwarding them: the channel retries
    captured: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    server: _Server | None = None

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, str]:
        with self._lock:
            self.captured.append(Received(path, headers, body))
            if self.hold:
                return 500, b'{"code":"FAIL","message":"held by the test"}', "application/json"
        skip = {"host", "content-length", "connection", "transfer-encoding"}
        forwarded = httpx.post(
            self.target + path,
            content=body,
            headers={k: v for k, v in headers.items() if k.lower() not in skip},
            timeout=10,
        )
        return forwarded.status_code, forwarded.content, forwarded.headers.get("content-type", "text/plain")

    def for_path(self, fragment: str) -> list[Received]:
        with self._lock:
            return [r for r in self.captured if fragment in r.path]


@contextlib.contextmanager
def serving_receivers(*fail_first: int) -> Iterator[tuple[WebhookReceiver, ...]]:
    """Webhook receivers listening on their own ports, the i-th answering 500 to its first `fail_first[i]`
    deliveries; closed on exit."""
    receivers = tuple(WebhookReceiver(fail_first=n) for n in fail_first)
    for receiver in receivers:
        receiver.server = _Server(receiver.handle)
    try:
        yield receivers
    finally:
        for receiver in receivers:
            assert receiver.server is not None
            receiver.server.close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with serving_receivers(0) as (receiver,):
        yield receiver


@pytest.fixture
def notification_tap() -> Iterator[NotificationTap]:
    tap = NotificationTap()
    tap.server = _Server(tap.handle)
    yield tap
    tap.server.close()


# -------------------------------------------------------------------------------------- the cashier


@dataclass
class RunningCashier:
    app: FastAPI
    base_url: str
    client: httpx.AsyncClient
    engine: AsyncEngine
    cashier: Cashier
    merchant_id: str
    webhook_secret: str
    namespace: str

    def headers(self, merchant_id: str | None = None) -> dict[str, str]:
        return {"X-Juhe-Merchant-Id": merchant_id or self.merchant_id}

    async def post(self, path: str, json: Any = None, merchant_id: str | None = None) -> httpx.Response:
        return await self.client.post(path, json=json, headers=self.headers(merchant_id))

    async def get(self, path: str, merchant_id: str | None = None, **params: Any) -> httpx.Response:
        return await self.client.get(path, headers=self.headers(merchant_id), params=params)

    async def outbox_count(self, event_type: str, subject: str | None = None) -> int:
        query = select(func.count()).select_from(outbox).where(outbox.c.event_type == event_type)
        if subject is not None:
            query = query.where(outbox.c.key == subject)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def payment(self, payment_id: str) -> dict[str, Any]:
        response = await self.get(f"/v1/payments/{payment_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def wait_status(self, payment_id: str, status: str) -> dict[str, Any]:
        return await wait_payment_status(self.payment, payment_id, status)

    async def configure(
        self, channel: str, config: dict[str, Any], priority: int, merchant_id: str | None = None
    ) -> None:
        response = await self.client.put(
            f"/v1/admin/merchants/{merchant_id or self.merchant_id}/channels/{channel}",
            json={"priority": priority, "config": config},
        )
        assert response.status_code == 200, response.text


CashierFactory = Callable[..., Any]


@pytest.fixture
async def start_cashier(
    migrated_database: Any,
    service_settings: Any,
    platform_topics: str,
    webhook_receiver: WebhookReceiver,
    notification_tap: NotificationTap,
) -> AsyncIterator[CashierFactory]:
    """`await start_cashier(**settings)` → a RunningCashier with one merchant and its webhook URL set."""
    stack = contextlib.AsyncExitStack()

    async def start(**overrides: Any) -> RunningCashier:
        database_url = await migrated_database("cashier")
        port = free_port()
        notification_tap.target = f"http://127.0.0.1:{port}"
        assert notification_tap.server is not None
        values: dict[str, Any] = {
            "database_url": database_url,
            "port": port,
            "public_base_url": notification_tap.server.base_url,
            "poll_initial_seconds": 0.3,
            "poll_backoff_max_seconds": 1.0,
            "poll_interval_seconds": 0.1,
            "expiry_interval_seconds": 0.2,
            "webhook_interval_seconds": 0.1,
            "webhook_retry_scale": 0.001,
            # The merchant's receiver is http://127.0.0.1:…: the dev flags (off in production) let it through.
            "webhook_allow_http": True,
            "webhook_allow_loopback": True,
        }
        values.update(overrides)
        settings = service_settings("cashier", **values)
        app = create_app(settings)
        # Torn down last-in first-out: client closed, then the server stopped, then the engine disposed.
        engine = create_async_engine(database_url)
        stack.push_async_callback(engine.dispose)
        base_url = await stack.enter_async_context(serve_app(app, port=port, name="the cashier"))
        client = httpx.AsyncClient(base_url=base_url, timeout=30)
        stack.push_async_callback(client.aclose)
        merchant_id = f"mch_{uuid.uuid4().hex[:12]}"
        local_receiver_allowed = settings.webhook_allow_http and settings.webhook_allow_loopback
        merchant = await client.put(
            f"/v1/admin/merchants/{merchant_id}",
            json={"notify_url": webhook_receiver.url} if local_receiver_allowed else {},
        )
        assert merchant.status_code == 200, merchant.text
        return RunningCashier(
            app=app,
            base_url=base_url,
            client=client,
            engine=engine,
            cashier=cashier_context(app.state.runtime).cashier,
            merchant_id=merchant_id,
            webhook_secret=merchant.json()["webhook_secret"],
            namespace=platform_topics,
        )

    async with stack:
        yield start


def qr_payment(order_no: str | None = None, amount_minor: int = 100, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "merchant_order_no": order_no or f"ord_{uuid.uuid4().hex[:16]}",
        "amount_minor": amount_minor,
        "currency": "CNY",
        "description": "Parking fee",
        "scene": "native_qr",
    }
    body.update(overrides)
    return body


async def approve(sandboxes: Sandboxes, channel: str, out_trade_no: str) -> None:
    async with httpx.AsyncClient() as client:
        if channel == "alipay":
            response = await client.post(
                f"{sandboxes.alipay.base_url}/control/trades/{out_trade_no}/approve",
                params={"app_id": sandboxes.alipay_app["app_id"]},
            )
        else:
            response = await client.post(
                f"{sandboxes.wechat.base_url}/control/orders/{out_trade_no}/approve", params={"mchid": WECHAT_MCHID}
            )
    assert response.status_code == 200, response.text


async def paid_payment(
    cashier: RunningCashier, sandboxes: Sandboxes, channel: str, amount_minor: int
) -> dict[str, Any]:
    """A payment the payer has paid (created, approved in the sandbox, succeeded in the cashier)."""
    created = await cashier.post("/v1/payments", qr_payment(amount_minor=amount_minor, preferred_channels=[channel]))
    assert created.status_code == 201, created.text
    await approve(sandboxes, channel, created.json()["attempts"][0]["out_trade_no"])
    return await cashier.wait_status(created.json()["id"], "succeeded")


ROUTING_ACTOR = {"X-Juhe-Actor": "ops@test"}


async def add_routes(routing_url: str, merchant_id: str, routes: list[tuple[str, str, str, int, list[str]]]) -> None:
    """Operator set-up at the real routing service: each (route_id, method, connector, rate_bps, scenes) gets the
    route, a fee rate in force since yesterday and the merchant's contract."""
    from datetime import UTC, datetime, timedelta

    valid_from = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    async with httpx.AsyncClient(base_url=routing_url, headers=ROUTING_ACTOR) as routing:
        for route_id, method, connector, rate_bps, scenes in routes:
            r = await routing.post(
                "/v1/channel-routes",
                json={
                    "route_id": route_id,
                    "method": method,
                    "kind": "direct" if "direct" in route_id else "service_provider",
                    "provider": connector,
                    "connector": connector,
                    "config_ref": f"cfg/{route_id}",
                    "scenes": scenes,
                },
            )
            assert r.status_code == 201, r.text
            r = await routing.post(
                "/v1/fee-rates", json={"route_id": route_id, "rate_bps": rate_bps, "valid_from": valid_from}
            )
            assert r.status_code == 201, r.text
            r = await routing.put(
                f"/v1/contracts/{merchant_id}/{route_id}", json={"sub_merchant_id": f"sub_{route_id}"}
            )
            assert r.status_code == 200, r.text
