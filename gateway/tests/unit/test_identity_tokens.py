"""The forwarded identity token is reused per principal while fresh, and it stays a valid, expiring token."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from gateway.api import gatekeeper as gk
from gateway.config import Settings
from gateway.domain.access import Principal
from libs.common.internal_auth import verify_identity_token

SECRET = "unit-test-internal-secret-0123456789abcdef"


def _gatekeeper() -> gk.Gatekeeper:
    settings = Settings(env="test", internal_token_secret=SecretStr(SECRET), internal_token_ttl_seconds=60)
    none: Any = None
    return gk.Gatekeeper(settings, none, none, none)


def test_identity_is_reused_within_half_its_lifetime_then_minted_again(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = _gatekeeper()
    now = [1_700_000_000.0]
    monkeypatch.setattr(gk.time, "time", lambda: now[0])
    merchant = Principal("merchant", "key_a", "plt_1", merchant_id="mch_a")
    first = gate.identity(merchant)
    now[0] += 29
    assert gate.identity(merchant) is first
    identity = verify_identity_token(first.token, SECRET, now=now[0])
    assert identity.merchant_id == "mch_a" and identity.key_id == "key_a" and identity.expires_at == 1_700_000_060
    now[0] += 2  # past half the TTL: a new token, expiring a full TTL from now
    second = gate.identity(merchant)
    assert second.token != first.token
    assert verify_identity_token(second.token, SECRET, now=now[0]).expires_at == 1_700_000_091


def test_each_principal_has_its_own_identity() -> None:
    gate = _gatekeeper()
    a = gate.identity(Principal("merchant", "key_a", "plt_1", merchant_id="mch_a"))
    b = gate.identity(Principal("merchant", "key_b", "plt_1", merchant_id="mch_b"))
    on_behalf = gate.identity(Principal("platform", "key_p", "plt_1", merchant_id="mch_a"))
    user = gate.identity(Principal("user", "utk_1", "plt_1", merchant_id=None, user_id="usr_1"))
    assert verify_identity_token(a.token, SECRET).merchant_id == "mch_a"
    assert verify_identity_token(b.token, SECRET).merchant_id == "mch_b"
    acting = verify_identity_token(on_behalf.token, SECRET)
    assert acting.platform == "plt_1" and acting.merchant_id == "mch_a"
    assert verify_identity_token(user.token, SECRET).user == "usr_1"
    assert (a.actor, b.actor, user.actor) == ("merchant:mch_a/key_a", "merchant:mch_b/key_b", "user:usr_1/utk_1")
