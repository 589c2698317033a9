"""Pure rules of webhook endpoints: event-type subscriptions and the rotation's two-signature header (the
SDK's verify is checked against the same header in sdk/python/tests/test_webhook_rotation.py)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from services.cashier.config import DEMO_SECRETS_KEY, Settings
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


def test_production_refuses_the_demo_secrets_key() -> None:
    """The webhook signing secrets are sealed with `secrets_encryption_key`: the demo one is in the repository, so
    production refuses it, as the current key or among the retired ones."""
    real = SecretStr("a-real-internal-token-secret-0123456789abcdef")
    other = SecretStr("cmVhbC1jYXNoaWVyLXNlY3JldHMta2V5LTMyLWJ5dGU=")
    with pytest.raises(ValidationError, match="demo secrets_encryption_key"):
        Settings(env="prod", internal_token_secret=real)
    with pytest.raises(ValidationError, match="demo secrets_encryption_key"):
        Settings(
            env="prod",
            secrets_encryption_key=other,
            secrets_retired_keys={"k0": SecretStr(DEMO_SECRETS_KEY)},
            internal_token_secret=real,
        )
    accepted = Settings(env="prod", secrets_encryption_key=other, internal_token_secret=real)
    assert accepted.secrets_encryption_key_id == "k1"
