"""One webhook secret: the one `POST /v1/platform/merchants` returns is the one the cashier signs with.

Real gateway, real cashier (worker loops on), the Alipay sandbox as the channel and a local webhook
receiver, all over real HTTP on fresh migrated databases. Nothing copies the secret across by hand.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from gateway.tests.integration.conftest import INTERNAL_SECRET, Stack, StackFactory
from libs.common.embedded import free_port
from libs.common.testing.infra import serve_app
from sandboxes.common.testing import SandboxProcess
from services.cashier.app import create_app as cashier_app
from services.cashier.domain.webhooks import SIGNATURE_HEADER, verify_signature
from services.cashier.tests.integration.flows.conftest import WebhookReceiver, _Server, wait_for


@pytest.fixture(scope="module")
def alipay() -> Iterator[tuple[SandboxProcess, dict[str, Any]]]:
    sandbox = SandboxProcess("sandboxes.alipay", port_env="JUHE_SANDBOX_ALIPAY_PORT",
                             env={"JUHE_SANDBOX_NOTIFY_SCALE": "0.001"})
    sandbox.start()
    try:
        app = httpx.post(sandbox.base_url + "/control/apps", json={})
        app.raise_for_status()
        yield sandbox, app.json()
    finally:
        sandbox.stop()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hooks = WebhookReceiver()
    hooks.server = _Server(hooks.handle)
    yield hooks
    hooks.server.close()


@pytest.fixture
async def stack_with_cashier(
    make_stack: StackFactory, migrated_database: Any, service_settings: Any, platform_topics: str
) -> AsyncIterator[Stack]:
    """The gateway in front of a real cashier that knows the gateway's URL (as the launcher sets it)."""
    cashier_port = free_port()
    cashier_url = f"http://127.0.0.1:{cashier_port}"
    stack: Stack = await make_stack(cashier_url=cashier_url)
    settings = service_settings(
        "cashier", database_url=await migrated_database("cashier"), port=cashier_port,
        public_base_url=cashier_url, gateway_url=stack.url, internal_token_secret=INTERNAL_SECRET,
        poll_initial_seconds=0.2, poll_backoff_max_seconds=0.5, poll_interval_seconds=0.1,
        webhook_interval_seconds=0.1, webhook_allow_http=True, webhook_allow_loopback=True,
    )
    async with serve_app(cashier_app(settings), port=cashier_port, name="the cashier"):
        yield stack


async def test_the_secret_returned_at_creation_verifies_the_webhooks(
    stack_with_cashier: Stack, alipay: tuple[SandboxProcess, dict[str, Any]], receiver: WebhookReceiver
) -> None:
    stack = stack_with_cashier
    admin = stack.admin()
    created = await stack.new_merchant("Webhook Secret Café")
    merchant_id, returned_secret = created["merchant_id"], created["webhook_secret"]
    sandbox, app = alipay
    config = {"gateway_url": sandbox.base_url + "/gateway.do", "app_id": app["app_id"],
              "app_private_key_pem": app["app_private_key_pem"],
              "alipay_public_key_pem": app["alipay_public_key_pem"], "seller_id": app["seller_id"]}

    # The cashier hears of the merchant for the first time here, and takes the gateway's secret.
    for _ in range(2):  # configuring again changes nothing
        await admin.request("PUT", f"/v1/admin/merchants/{merchant_id}/channels/alipay",
                            json={"priority": 1, "config": config})
    await admin.request("PUT", f"/v1/admin/merchants/{merchant_id}", json={"notify_url": receiver.url})
    kept = await admin.request("GET", f"/v1/admin/merchants/{merchant_id}")
    assert kept["webhook_secret"] == returned_secret

    juhe = stack.merchant(key_id=created["api_key"]["key_id"], secret=created["api_key"]["secret"])
    payment = await juhe.request("POST", "/v1/payments", json={
        "merchant_order_no": f"ord_{uuid.uuid4().hex[:16]}", "amount_minor": 1200, "currency": "CNY",
        "description": "Parking", "scene": "native_qr"})
    async with httpx.AsyncClient() as http:
        approved = await http.post(f"{sandbox.base_url}/control/trades/{payment['attempts'][0]['out_trade_no']}"
                                   "/approve", params={"app_id": app["app_id"]})
    assert approved.status_code == 200, approved.text

    hooks = await wait_for(receiver.delivered, "the payment.succeeded webhook")
    hook = hooks[0]
    assert payment["id"] in hook.body.decode()
    assert verify_signature(returned_secret, hook.headers[SIGNATURE_HEADER], hook.body, now=int(time.time()))


async def test_a_merchant_the_gateway_does_not_know_gets_a_secret_of_its_own(stack_with_cashier: Stack) -> None:
    """The platform's cashier-only merchants (the wallet top-up merchant) still get one, minted once."""
    admin = stack_with_cashier.admin()
    merchant_id = f"mch_{uuid.uuid4().hex[:12]}"
    first = await admin.request("PUT", f"/v1/admin/merchants/{merchant_id}", json={})
    again = await admin.request("PUT", f"/v1/admin/merchants/{merchant_id}", json={})
    assert first["webhook_secret"].startswith("whsec_") and again["webhook_secret"] == first["webhook_secret"]
