"""Request signatures: a known vector (computed with openssl), parsing, and the SDK/gateway agreement."""

from __future__ import annotations

import base64
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from juhe_sdk.signing import Signer

from gateway.domain import signing
from libs.common.errors import Problem

KEY_ID = "key_0192aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
BODY = b'{"amount_minor":8888,"currency":"CNY"}'
# printf '<string to sign>' | openssl dgst -sha256 -hmac sk_test_secret -binary | base64
KNOWN_SIGNATURE = "6T/wJkTC3mUm7HbrOz2R77zP5MsQm+eKD7urh2OVhjw="


def _message(**overrides: object) -> bytes:
    args: dict = dict(
        algorithm=signing.HMAC_ALGORITHM,
        key_id=KEY_ID,
        method="post",
        path_and_query="/v1/payments?expand=attempts",
        timestamp=1700000000,
        nonce="nonce_abcdefgh",
        body=BODY,
    )
    args.update(overrides)
    return signing.string_to_sign(**args)


def test_string_to_sign_and_hmac_match_the_known_vector() -> None:
    message = _message()
    assert message.endswith(b"597ab620c5b2ca9d8a5076b9d98c3046e47c9edf409efd23bb985994b7dc088f\n")
    assert message.startswith(b"JUHE-HMAC-SHA256\nkey_0192")
    assert base64.b64encode(signing.hmac_signature("sk_test_secret", message)).decode() == KNOWN_SIGNATURE
    signing.verify_hmac("sk_test_secret", message, base64.b64decode(KNOWN_SIGNATURE))


@pytest.mark.parametrize(
    "change",
    [
        {"method": "GET"},
        {"path_and_query": "/v1/payments"},
        {"timestamp": 1700000001},
        {"nonce": "nonce_abcdefgX"},
        {"body": BODY.replace(b"8888", b"8889")},
        {"key_id": "key_0192bbbbbbbbbbbbbbbbbbbbbbbbbbbb"},
    ],
)
def test_any_change_to_a_signed_part_breaks_the_signature(change: dict) -> None:
    with pytest.raises(Problem) as err:
        signing.verify_hmac("sk_test_secret", _message(**change), base64.b64decode(KNOWN_SIGNATURE))
    assert err.value.spec.code == "signature_invalid"
    # The 401 says which string the gateway checked, so a developer can diff it with theirs; never the secret.
    hint = err.value.extensions["string_to_sign"]
    assert hint == _message(**change).decode() and "sk_test_secret" not in hint
    assert hint.split("\n")[:2] == ["JUHE-HMAC-SHA256", change.get("key_id", KEY_ID)]


def test_sdk_signer_produces_the_header_the_gateway_verifies() -> None:
    header = Signer(KEY_ID, "sk_test_secret").authorization(
        "POST", "/v1/payments?expand=attempts", BODY, timestamp=1700000000, nonce="nonce_abcdefgh"
    )
    assert header == (
        f"JUHE-HMAC-SHA256 key_id={KEY_ID},timestamp=1700000000,nonce=nonce_abcdefgh,signature={KNOWN_SIGNATURE}"
    )
    parsed = signing.parse_authorization(header)
    assert (parsed.key_id, parsed.timestamp, parsed.nonce) == (KEY_ID, 1700000000, "nonce_abcdefgh")


def test_rsa_signature_from_sdk_verifies_with_the_public_key_only() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    header = Signer(KEY_ID, rsa_private_key_pem=pem).authorization("GET", "/v1/payments/pay_1", b"")
    parsed = signing.parse_authorization(header)
    assert parsed.algorithm == signing.RSA_ALGORITHM
    message = signing.string_to_sign(
        algorithm=parsed.algorithm,
        key_id=KEY_ID,
        method="GET",
        path_and_query="/v1/payments/pay_1",
        timestamp=parsed.timestamp,
        nonce=parsed.nonce,
        body=b"",
    )
    public = signing.load_rsa_public_key(public_pem)
    signing.verify_rsa(public, message, parsed.signature)
    with pytest.raises(Problem) as err:
        signing.verify_rsa(public, message.replace(b"pay_1", b"pay_2"), parsed.signature)
    assert err.value.spec.code == "signature_invalid"


def test_small_rsa_keys_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    pem = small.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(Problem) as err:
        signing.load_rsa_public_key(pem)
    assert err.value.spec.code == "rsa_public_key_invalid"


@pytest.mark.parametrize(
    "header",
    [
        "Basic abc",
        f"JUHE-HMAC-SHA256 key_id={KEY_ID},timestamp=1,nonce=nonce_abcdefgh",
        f"JUHE-HMAC-SHA256 key_id={KEY_ID},timestamp=x,nonce=nonce_abcdefgh,signature=AA==",
        f"JUHE-HMAC-SHA256 key_id={KEY_ID},timestamp=1,nonce=short,signature=AA==",
        f"JUHE-HMAC-SHA256 key_id={KEY_ID},timestamp=1,nonce=nonce_abcdefgh,signature=!!!",
        "JUHE-HMAC-SHA256 key_id=nope,timestamp=1,nonce=nonce_abcdefgh,signature=AA==",
        f"JUHE-HMAC-SHA256 key_id={KEY_ID},key_id={KEY_ID},timestamp=1,nonce=nonce_abcdefgh,signature=AA==",
    ],
)
def test_malformed_headers_are_refused(header: str) -> None:
    with pytest.raises(Problem) as err:
        signing.parse_authorization(header)
    assert err.value.spec.code == "authorization_malformed"


def test_timestamp_window_is_plus_or_minus_five_minutes() -> None:
    now = time.time()
    signing.check_timestamp(int(now) - 299, now=now, window_seconds=300)
    signing.check_timestamp(int(now) + 299, now=now, window_seconds=300)
    for skew in (-302, 302):
        with pytest.raises(Problem) as err:
            signing.check_timestamp(int(now) + skew, now=now, window_seconds=300)
        assert err.value.spec.code == "timestamp_out_of_window"
