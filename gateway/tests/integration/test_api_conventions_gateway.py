"""The API conventions (docs/api-conventions.md) as a merchant meets them: the gateway in front of a real cashier.

One merchant, one paid Alipay QR payment, then: the one list shape and its refusals, a lookup that finds
nothing answering an empty list, the normalised `payer_action`, metadata limits, and API versions (the
`Juhe-Version` header echoed, an unknown one refused, the merchant's pinned default).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from juhe_sdk import APIError, AsyncClient

from gateway.domain.versions import LATEST_VERSION
from gateway.tests.integration.conftest import Stack
from gateway.tests.integration.with_cashier import (
    AlipaySandbox,
    alipay,
    open_alipay_channel,
    paid_alipay_qr,
    stack_with_cashier,
)

__all__ = ["alipay", "stack_with_cashier"]  # fixtures used here


async def _refused(juhe: AsyncClient, method: str, path: str, **kwargs: Any) -> APIError:
    with pytest.raises(APIError) as refused:
        await juhe.request(method, path, **kwargs)
    return refused.value


async def test_lists_payer_actions_metadata_and_versions_through_the_gateway(
    stack_with_cashier: Stack, alipay: AlipaySandbox
) -> None:
    stack = stack_with_cashier
    created = await stack.new_merchant("Conventions Tea House")
    merchant_id = created["merchant_id"]
    await open_alipay_channel(stack, merchant_id, alipay)
    juhe = stack.merchant(key_id=created["api_key"]["key_id"], secret=created["api_key"]["secret"])
    paid = await paid_alipay_qr(juhe, alipay, "Tea")

    # payer_action: the type's one field, channel extras apart.
    assert paid["payer_action"]["type"] == "qr_code" and paid["payer_action"]["qr_code"]
    assert isinstance(paid["payer_action"]["channel_data"], dict) and "code_url" not in paid["payer_action"]

    # One list shape; a lookup is a list (empty when nothing matches), with the attempts.
    page = await juhe.request("GET", "/v1/payments", params={"limit": 1})
    assert set(page) == {"data", "has_more", "next_cursor"} and [p["id"] for p in page["data"]] == [paid["id"]]
    assert page["has_more"] is False and page["data"][0]["attempts"]
    found = await juhe.request("GET", "/v1/payments", params={"merchant_order_no": paid["merchant_order_no"]})
    assert [p["id"] for p in found["data"]] == [paid["id"]]
    none = await juhe.request("GET", "/v1/payments", params={"merchant_order_no": "no-such-order"})
    assert none == {"data": [], "has_more": False, "next_cursor": None}
    refunds = await juhe.request("GET", f"/v1/payments/{paid['id']}/refunds")
    assert refunds == {"data": [], "has_more": False, "next_cursor": None}

    # What a list would otherwise ignore is a 422 problem with a documented code.
    for params, code in (
        ({"cursor": "garbage"}, "validation_failed"),
        ({"status": "paid"}, "validation_failed"),
        ({"channel": "paypal"}, "validation_failed"),
        ({"stauts": "succeeded"}, "unknown_parameter"),
    ):
        refused = await _refused(juhe, "GET", "/v1/payments", params=params)
        assert (refused.status, refused.code) == (422, code), params
    documented = {e["code"] for e in (await juhe.request("GET", "/openapi.json"))["x-error-codes"]}
    assert {"validation_failed", "unknown_parameter", "metadata_invalid", "api_version_unknown"} <= documented

    # Metadata limits, nothing created.
    body = {
        "merchant_order_no": f"ord_{uuid.uuid4().hex[:16]}",
        "amount_minor": 100,
        "currency": "CNY",
        "description": "Tea",
        "scene": "native_qr",
        "metadata": {"k" * 41: "v"},
    }
    refused = await _refused(juhe, "POST", "/v1/payments", json=body)
    assert (refused.status, refused.code) == (422, "metadata_invalid")
    after = await juhe.request("GET", "/v1/payments", params={"merchant_order_no": body["merchant_order_no"]})
    assert after["data"] == []

    # Versions: the answer says which one it used; an unknown one is refused; the merchant's pin applies.
    answered = await juhe.request_raw("GET", "/v1/payments")
    assert answered.headers["juhe-version"] == LATEST_VERSION
    asked = await juhe.request_raw("GET", "/v1/payments", headers={"Juhe-Version": LATEST_VERSION})
    assert asked.headers["juhe-version"] == LATEST_VERSION
    unknown = await _refused(juhe, "GET", "/v1/payments", headers={"Juhe-Version": "2019-01-01"})
    assert (unknown.status, unknown.code) == (400, "api_version_unknown")
    admin = stack.admin()
    versions = await admin.request("GET", "/v1/platform/api-versions")
    assert versions["latest"] == LATEST_VERSION and versions["data"][-1]["name"] == LATEST_VERSION
    pinned = await admin.request(
        "PUT", f"/v1/platform/merchants/{merchant_id}/api-version", json={"api_version": LATEST_VERSION}
    )
    assert pinned == {"merchant_id": merchant_id, "api_version": LATEST_VERSION, "pinned": True}
    read = await admin.request("GET", f"/v1/platform/merchants/{merchant_id}/api-version")
    assert read["pinned"] is True and read["api_version"] == LATEST_VERSION
    bad_pin = await _refused(
        admin, "PUT", f"/v1/platform/merchants/{merchant_id}/api-version", json={"api_version": "2019-01-01"}
    )
    assert (bad_pin.status, bad_pin.code) == (400, "api_version_unknown")
