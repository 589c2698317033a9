"""Test and live keys (docs/test-mode.md): the mode shows in the key id, and the forwarded identity carries it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from gateway.api import gatekeeper as gk
from gateway.config import Settings
from gateway.domain.access import Principal
from gateway.domain.credentials import new_key_id
from gateway.domain.signing import KEY_ID_RE
from libs.common.errors import Problem
from libs.common.internal_auth import Identity, encode_identity, mint_identity_token, verify_identity_token

SECRET = "unit-test-internal-secret-0123456789abcdef"


@pytest.mark.parametrize("mode", ["test", "live"])
def test_a_key_id_names_its_mode_and_is_a_valid_key_id(mode: Any) -> None:
    key_id = new_key_id(mode)
    assert key_id.startswith(f"key_{mode}_") and KEY_ID_RE.match(key_id)


def test_key_ids_made_before_modes_still_sign_and_others_do_not() -> None:
    assert KEY_ID_RE.match("key_0192aaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    for bad in (
        "key_staging_0192aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "key_test_0192",
        "key_test__0192aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ):
        assert not KEY_ID_RE.match(bad)


def test_the_forwarded_identity_carries_the_keys_mode_and_only_a_known_one() -> None:
    settings = Settings(env="test", internal_token_secret=SecretStr(SECRET), internal_token_ttl_seconds=60)
    none: Any = None
    gate = gk.Gatekeeper(settings, none, none, none)
    for mode in ("test", "live"):
        principal = Principal("merchant", f"key_{mode}_a", "plt_1", merchant_id="mch_a", mode=mode)
        assert verify_identity_token(gate.identity(principal).token, SECRET).mode == mode
    user = Principal("user", "utk_a", "plt_1", user_id="usr_a")
    assert verify_identity_token(gate.identity(user).token, SECRET).mode is None
    # A token without the claim (minted before modes) still verifies; an unknown mode does not.
    assert verify_identity_token(mint_identity_token(SECRET, key_id="k", merchant_id="mch_a"), SECRET).mode is None
    forged: Any = "staging"
    bad = encode_identity(Identity(key_id="k", expires_at=2_000_000_000, merchant_id="mch_a", mode=forged), SECRET)
    with pytest.raises(Problem):
        verify_identity_token(bad, SECRET, now=1_700_000_000)


def test_only_a_console_session_names_its_mode() -> None:
    """`Juhe-Mode` narrows a console session (no key mode of its own) to one mode; a key or a user token keeps its
    own whatever it sends; an unknown mode is refused, not ignored."""
    from gateway.domain.staff import with_console_mode

    session = Principal("merchant", "cst_1", "plt_1", merchant_id="mch_1", staff_id="stf_1", permissions=frozenset())
    assert with_console_mode(session, "live").mode == "live" and with_console_mode(session, "test").mode == "test"
    assert with_console_mode(session, None) is session
    key = Principal("merchant", "key_test_1", "plt_1", merchant_id="mch_1", mode="test")
    assert with_console_mode(key, "live") is key
    user = Principal("user", "tok_1", "plt_1", user_id="u_1")
    assert with_console_mode(user, "live").mode is None
    with pytest.raises(Problem) as refused:
        with_console_mode(session, "staging")
    assert refused.value.spec.code == "validation_failed"
