"""A lone UTF-16 surrogate or a NUL in a create request is 422 validation_failed, nothing created (it used to
be a 500 from `request_fingerprint`, which now never raises on any str: tests/unit/test_webhook_targets.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import Sandboxes

ORDER = "hostile-1"


@pytest.mark.parametrize("raw_text", ["\\udfff", "\\ud800x", "a\\u0000b"])
@pytest.mark.parametrize("field", ["description", "merchant_order_no"])
async def test_unstorable_text_is_422_and_nothing_is_created(
    start_cashier: Any, sandboxes: Sandboxes, raw_text: str, field: str
) -> None:
    cashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    values = {"merchant_order_no": ORDER, "description": "Parking fee", field: "HOSTILE"}
    body = json.dumps({**values, "amount_minor": 100, "currency": "CNY", "scene": "native_qr"})
    body = body.replace('"HOSTILE"', f'"{raw_text}"')  # the escape as raw JSON text, as a client sends it
    response = await cashier.client.post(
        "/v1/payments", content=body.encode(), headers={**cashier.headers(), "Content-Type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["code"] == "validation_failed", response.text
    listed = await cashier.get("/v1/payments")
    assert listed.status_code == 200 and listed.json()["data"] == []
