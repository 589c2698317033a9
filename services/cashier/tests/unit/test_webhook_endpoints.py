"""Pure rules of webhook endpoints: event-type subscriptions and the rotation's two-signature header (the
SDK's verify is checked against the same header in sdk/python/tests/test_webhook_rotation.py)."""

from __future__ import annotations

from services.cashier.domain.webhook_endpoints import (
    EVENT_TYPES,
    enabled_events_problem,
    normalized_events,
    subscribes_to,
)
from services.cashier.domain.webhooks import signature_header, verify_signature

BODY = b'{"id":"evt_1","type":"payment.succeeded"}'
NOW = 1_765_000_000


def test_event_type_subscriptions() -> None:
    assert enabled_events_problem(["payment.succeeded", "refund.failed"]) is None
    assert enabled_events_problem(["*"]) is None
    for bad in ([], ["payment.paid"], ["payment.succeeded", "payment.succeeded"]):
        assert enabled_events_problem(bad) is not None, bad
    assert normalized_events(["refund.failed", "payment.succeeded"]) == ["payment.succeeded", "refund.failed"]
    assert normalized_events(["payment.closed", "*"]) == ["*"]
    assert all(subscribes_to(["*"], t) for t in EVENT_TYPES)
    assert subscribes_to(["payment.closed"], "payment.closed") and not subscribes_to(
        ["payment.closed"], "payment.succeeded"
    )


def test_rotation_header_verifies_with_either_secret() -> None:
    header = signature_header("whsec_new", NOW, BODY, also=("whsec_old",))
    assert header.startswith(f"t={NOW},v1=") and header.count("v1=") == 2
    for secret in ("whsec_new", "whsec_old", ["whsec_other", "whsec_old"]):
        assert verify_signature(secret, header, BODY, now=NOW)
    assert not verify_signature("whsec_other", header, BODY, now=NOW)
    single = signature_header("whsec_new", NOW, BODY)
    assert single.count("v1=") == 1 and not verify_signature("whsec_old", single, BODY, now=NOW)
