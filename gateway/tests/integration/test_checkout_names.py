"""The hosted checkout shows the merchant's name from the gateway's registry, never one the request gives.

Real gateway, real cashier (knowing the gateway's URL, as the launcher sets it), the Alipay sandbox as the
merchant's channel, real HTTP on fresh migrated databases.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from juhe_sdk import InvalidRequestError

from gateway.tests.integration.conftest import Stack
from gateway.tests.integration.with_cashier import AlipaySandbox, alipay, open_alipay_channel, stack_with_cashier

__all__ = ["alipay", "stack_with_cashier"]  # fixtures used here

REGISTRY_NAME = "登记名 Registry Café"


async def test_the_page_shows_the_registry_name(stack_with_cashier: Stack, alipay: AlipaySandbox) -> None:
    stack = stack_with_cashier
    created = await stack.new_merchant(REGISTRY_NAME)
    merchant_id = created["merchant_id"]
    await open_alipay_channel(stack, merchant_id, alipay)
    juhe = stack.merchant(key_id=created["api_key"]["key_id"], secret=created["api_key"]["secret"])
    body = {
        "merchant_order_no": f"ord_{uuid.uuid4().hex[:16]}",
        "amount_minor": 900,
        "currency": "CNY",
        "description": "Tuition",
        "return_url": "https://shop.example/return",
    }

    with pytest.raises(InvalidRequestError) as refused:
        await juhe.request("POST", "/v1/checkout/sessions", json={**body, "merchant_name": "Someone Else Ltd"})
    assert refused.value.code == "validation_failed"

    session = await juhe.request("POST", "/v1/checkout/sessions", json=body)
    url = urlsplit(session["url"])
    assert f"{url.scheme}://{url.netloc}" == stack.url and url.path.startswith("/checkout/cst_")
    async with httpx.AsyncClient(base_url=stack.url) as http:  # the page's own call, by token, no key
        page = await http.get(f"/v1/checkout/pages/{url.path.rsplit('/', 1)[1]}")
    assert page.status_code == 200, page.text
    assert page.json()["merchant_name"] == REGISTRY_NAME

    # The internal read is for Juhe's services only.
    async with httpx.AsyncClient(base_url=stack.url) as http:
        anonymous = await http.get(f"/internal/v1/merchants/{merchant_id}")
    assert anonymous.status_code in (401, 403, 404)
