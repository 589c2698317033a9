"""One webhook secret: the one `POST /v1/platform/merchants` returns is the one the cashier signs with.

Real gateway, real cashier (worker loops on), the Alipay sandbox as the channel and a local webhook
receiver, all over real HTTP on fresh migrated databases. Nothing copies the secret across by hand.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from gateway.tests.integration.conftest import Stack
from gateway.tests.integration.with_cashier import (
    AlipaySandbox,
    alipay,
    open_alipay_channel,
    paid_alipay_qr,
    stack_with_cashier,
)
from services.cashier.domain.webhooks import SIGNATURE_HEADER, verify_signature
from services.cashier.tests.integration.flows.conftest import WebhookReceiver, serving_receivers, wait_for

__all__ = ["alipay", "stack_with_cashier"]  # fixtures used here


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with serving_receivers(0) as (hooks,):
        yield hooks


async def test_the_secret_returned_at_creation_verifies_the_webhooks(
    stack_with_cashier: Stack, alipay: AlipaySandbox, receiver: WebhookReceiver
) -> None:
    stack = stack_with_cashier
    admin = stack.admin()
    created = await stack.new_merchant("Webhook Secret Café")
    merchant_id, returned_secret = created["merchant_id"], created["webhook_secret"]

    # The cashier hears of the merchant for the first time here, and takes the gateway's secret.
    for _ in range(2):  # configuring again changes nothing
        await open_alipay_channel(stack, merchant_id, alipay)
    await admin.request("PUT", f"/v1/admin/merchants/{merchant_id}", json={"notify_url": receiver.url})
    kept = await admin.request("GET", f"/v1/admin/merchants/{merchant_id}")
    assert kept["webhook_secret"] == returned_secret

    juhe = stack.merchant(key_id=created["api_key"]["key_id"], secret=created["api_key"]["secret"])
    payment = await paid_alipay_qr(juhe, alipay, "Parking")

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
