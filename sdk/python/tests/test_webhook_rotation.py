"""The SDK verifies a delivery sent during a secret rotation (two `v1=` entries) with either secret."""

from __future__ import annotations

import pytest
from juhe_sdk.errors import WebhookSignatureError
from juhe_sdk.webhooks import compute_signature, construct_event, verify_signature

BODY = b'{"id":"evt_1","type":"payment.succeeded","data":{}}'
NOW = 1_765_000_000


def test_either_secret_verifies_a_rotation_header() -> None:
    header = f"t={NOW},v1={compute_signature(BODY, 'whsec_new', NOW)},v1={compute_signature(BODY, 'whsec_old', NOW)}"
    for secret in ("whsec_new", "whsec_old", ["whsec_other", "whsec_new"]):
        verify_signature(BODY, header, secret, now=NOW)
    assert construct_event(BODY, header, "whsec_old", now=NOW)["id"] == "evt_1"
    with pytest.raises(WebhookSignatureError):
        verify_signature(BODY, header, "whsec_other", now=NOW)
    after = f"t={NOW},v1={compute_signature(BODY, 'whsec_new', NOW)}"
    with pytest.raises(WebhookSignatureError):
        verify_signature(BODY, after, "whsec_old", now=NOW)
