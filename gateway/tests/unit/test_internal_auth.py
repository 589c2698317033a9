"""The internal identity token: a known vector (openssl), forgery, expiry, and the shape services rely on."""

from __future__ import annotations

from typing import TypedDict, Unpack

import pytest

from libs.common.errors import Problem
from libs.common.internal_auth import Identity, encode_identity, mint_identity_token, verify_identity_token

# P=$(printf '{"exp":1700000060,"key_id":"key_x","merchant_id":"mch_a"}' | base64url); printf "v1.$P" | openssl hmac
KNOWN_TOKEN = (
    "v1.eyJleHAiOjE3MDAwMDAwNjAsImtleV9pZCI6ImtleV94IiwibWVyY2hhbnRfaWQiOiJtY2hfYSJ9"
    ".lkRrIfPA7M2eS2YLUona_lXxDYL8TyTg4sygetJoLLg"
)


def test_mint_matches_the_known_vector_and_verifies() -> None:
    token = mint_identity_token("s3cret", key_id="key_x", merchant_id="mch_a", ttl_seconds=60, now=1700000000)
    assert token == KNOWN_TOKEN
    identity = verify_identity_token(token, "s3cret", now=1700000001)
    assert identity == Identity(key_id="key_x", expires_at=1700000060, merchant_id="mch_a")
    assert identity.kind == "merchant"


@pytest.mark.parametrize(
    "token",
    [
        KNOWN_TOKEN[:-2] + "AA",  # signature changed
        KNOWN_TOKEN.replace("eyJleHAiOjE3", "eyJleHAiOjE4"),  # payload changed
        "v2" + KNOWN_TOKEN[2:],
        "garbage",
        "v1.!!!.###",
    ],
)
def test_forged_or_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(Problem) as err:
        verify_identity_token(token, "s3cret", now=1700000001)
    assert err.value.spec.code == "identity_invalid"


def test_other_secret_and_expiry_are_refused() -> None:
    with pytest.raises(Problem):
        verify_identity_token(KNOWN_TOKEN, "other", now=1700000001)
    with pytest.raises(Problem) as err:
        verify_identity_token(KNOWN_TOKEN, "s3cret", now=1700000060 + 6)
    assert "expired" in err.value.detail


class Claims(TypedDict, total=False):
    """The claims of `Identity` that decide its kind."""

    merchant_id: str
    platform: str
    user: str
    service: str


def test_kinds() -> None:
    def kind(**claims: Unpack[Claims]) -> str:
        token = encode_identity(Identity(key_id="k", expires_at=2**40, **claims), "s")
        return verify_identity_token(token, "s").kind

    assert kind(platform="plt_1") == "platform"
    assert kind(platform="plt_1", merchant_id="mch_1") == "platform"
    assert kind(user="usr_1", platform="plt_1") == "user"
    assert kind(service="cashier") == "service"
    with pytest.raises(ValueError):
        mint_identity_token("s", key_id="k")
