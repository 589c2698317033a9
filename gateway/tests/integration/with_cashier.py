"""The gateway in front of a real cashier with the Alipay sandbox as its channel: fixtures and steps shared by
the tests that follow a merchant from `POST /v1/platform/merchants` to a paid payment's webhooks.

Import the fixtures into a test module (`from gateway.tests.integration.with_cashier import alipay,
stack_with_cashier`); pytest then finds them there.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from juhe_sdk import AsyncClient

from gateway.tests.integration.conftest import INTERNAL_SECRET, Stack, StackFactory
from libs.common.embedded import free_port
from libs.common.testing.infra import serve_app
from sandboxes.common.testing import SandboxProcess
from services.cashier.app import create_app as cashier_app

AlipaySandbox = tuple[SandboxProcess, dict[str, Any]]


@pytest.fixture(scope="module")
def alipay() -> Iterator[AlipaySandbox]:
    """The Alipay sandbox and one app registered with it."""
    sandbox = SandboxProcess(
        "sandboxes.alipay", port_env="JUHE_SANDBOX_ALIPAY_PORT", env={"JUHE_SANDBOX_NOTIFY_SCALE": "0.001"}
    )
    sandbox.start()
    try:
        app = httpx.post(sandbox.base_url + "/control/apps", json={})
        app.raise_for_status()
        yield sandbox, app.json()
    finally:
        sandbox.stop()


@pytest.fixture
async def stack_with_cashier(
    make_stack: StackFactory, migrated_database: Any, service_settings: Any, platform_topics: str
) -> AsyncIterator[Stack]:
    """The gateway in front of a real cashier that knows the gateway's URL (as the launcher sets it)."""
    cashier_port = free_port()
    cashier_url = f"http://127.0.0.1:{cashier_port}"
    stack: Stack = await make_stack(cashier_url=cashier_url)
    settings = service_settings(
        "cashier",
        database_url=await migrated_database("cashier"),
        port=cashier_port,
        public_base_url=cashier_url,
        gateway_url=stack.url,
        internal_token_secret=INTERNAL_SECRET,
        poll_initial_seconds=0.2,
        poll_backoff_max_seconds=0.5,
        poll_interval_seconds=0.1,
        webhook_interval_seconds=0.1,
        webhook_allow_http=True,
        webhook_allow_loopback=True,
    )
    async with serve_app(cashier_app(settings), port=cashier_port, name="the cashier"):
        yield stack


async def open_alipay_channel(stack: Stack, merchant_id: str, alipay: AlipaySandbox) -> None:
    """The platform configures the merchant's Alipay channel at the cashier (through the gateway)."""
    sandbox, app = alipay
    config = {
        "gateway_url": sandbox.base_url + "/gateway.do",
        "app_id": app["app_id"],
        "app_private_key_pem": app["app_private_key_pem"],
        "alipay_public_key_pem": app["alipay_public_key_pem"],
        "seller_id": app["seller_id"],
    }
    await stack.admin().request(
        "PUT", f"/v1/admin/merchants/{merchant_id}/channels/alipay", json={"priority": 1, "config": config}
    )


async def paid_alipay_qr(juhe: AsyncClient, alipay: AlipaySandbox, description: str) -> dict[str, Any]:
    """A QR payment created by the merchant and approved by the payer at the Alipay sandbox."""
    sandbox, app = alipay
    payment: dict[str, Any] = await juhe.request(
        "POST",
        "/v1/payments",
        json={
            "merchant_order_no": f"ord_{uuid.uuid4().hex[:16]}",
            "amount_minor": 1200,
            "currency": "CNY",
            "description": description,
            "scene": "native_qr",
        },
    )
    async with httpx.AsyncClient() as http:
        approved = await http.post(
            f"{sandbox.base_url}/control/trades/{payment['attempts'][0]['out_trade_no']}/approve",
            params={"app_id": app["app_id"]},
        )
    assert approved.status_code == 200, approved.text
    return payment
