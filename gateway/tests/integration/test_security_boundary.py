"""The gateway as a security boundary, over real HTTP: every refusal has its code and changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from juhe_sdk import (
    AuthenticationError,
    IdempotencyError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from juhe_sdk.signing import Signer

from gateway.tests.integration.conftest import Stack, StackFactory
from libs.common.internal_auth import verify_identity_token

PAYMENT = {"amount_minor": 8888, "currency": "CNY"}


def signed_headers(stack: Stack, method: str, path: str, body: bytes, **sign: Any) -> dict[str, str]:
    signer = Signer(sign.pop("key_id", stack.keys["key_id"]), sign.pop("secret", stack.keys["secret"]))
    return {
        "Authorization": signer.authorization(method, path, body, **sign),
        "Content-Type": "application/json",
        "Idempotency-Key": sign.get("idempotency_key", f"k-{time.monotonic_ns()}"),
    }


def problem(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return str(response.json()["code"])


async def test_signed_request_reaches_the_service_with_a_verified_identity(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    juhe = stack.merchant()
    created = await juhe.payments.create(**PAYMENT)
    assert created["merchant_id"] == "mch_demo"
    assert (await juhe.payments.retrieve(created["id"]))["id"] == created["id"]

    async with httpx.AsyncClient(base_url=stack.url) as raw:
        path = "/v1/payments/-/whoami"
        headers = {
            **signed_headers(stack, "GET", path, b""),
            "X-Trace-Id": "trace-abc-123",
            "X-Juhe-Merchant-Id": "mch_someone_else",  # a spoofed internal header never gets through
            "X-Juhe-Identity": "v1.forged.token",
        }
        response = await raw.get(path, headers=headers)
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["identity"]["merchant_id"] == "mch_demo"
    assert "platform" not in seen["identity"]
    assert seen["headers"]["x-trace-id"] == "trace-abc-123"
    # The gateway sets the transitional headers from the verified principal, overwriting the spoof.
    assert seen["headers"]["x-juhe-merchant-id"] == "mch_demo"
    assert seen["headers"]["x-juhe-actor"] == f"merchant:mch_demo/{stack.keys['key_id']}"
    assert "authorization" not in seen["headers"]
    identity = verify_identity_token(seen["headers"]["x-juhe-identity"], "gateway-tests-internal-secret-0123456789")
    assert identity.merchant_id == "mch_demo" and identity.key_id == stack.keys["key_id"]
    assert response.headers["x-trace-id"] == "trace-abc-123"


async def test_forged_signature_is_refused_and_nothing_reaches_the_service(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    body = b'{"amount_minor":8888,"currency":"CNY"}'
    async with httpx.AsyncClient(base_url=stack.url) as raw:
        wrong_secret = await raw.post(
            "/v1/payments", content=body, headers=signed_headers(stack, "POST", "/v1/payments", body, secret="sk_guess")
        )
        tampered = await raw.post(
            "/v1/payments",
            content=body.replace(b"8888", b"1"),
            headers=signed_headers(stack, "POST", "/v1/payments", body),
        )
        other_path = await raw.post(
            "/v1/payments?x=1", content=body, headers=signed_headers(stack, "POST", "/v1/payments", body)
        )
        unknown_key = await raw.get(
            "/v1/payments",
            headers=signed_headers(stack, "GET", "/v1/payments", b"", key_id="key_" + "0" * 32),
        )
        unsigned = await raw.get("/v1/payments")
    assert [r.status_code for r in (wrong_secret, tampered, other_path, unknown_key, unsigned)] == [401] * 5
    assert [problem(r) for r in (wrong_secret, tampered, other_path)] == ["signature_invalid"] * 3
    # Each says which string the gateway checked: what was sent (the path with its query, the tampered body's
    # hash), to diff with the string the client signed; never a secret.
    expected = other_path.json()["string_to_sign"].split("\n")
    assert expected[2:4] == ["POST", "/v1/payments?x=1"] and expected[-1] == ""
    assert tampered.json()["string_to_sign"].split("\n")[6] == hashlib.sha256(body.replace(b"8888", b"1")).hexdigest()
    assert "sk_guess" not in wrong_secret.text
    assert problem(unknown_key) == "api_key_invalid"
    assert problem(unsigned) == "authentication_required"
    assert stack.upstream.calls == [] and stack.upstream.payments == {}


async def test_stale_and_future_timestamps_are_refused(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    async with httpx.AsyncClient(base_url=stack.url) as raw:
        for skew in (-301, 301, -3600):
            headers = signed_headers(stack, "GET", "/v1/payments", b"", timestamp=int(time.time()) + skew)
            response = await raw.get("/v1/payments", headers=headers)
            assert response.status_code == 401
            assert problem(response) == "timestamp_out_of_window"
        ok = await raw.get(
            "/v1/payments", headers=signed_headers(stack, "GET", "/v1/payments", b"", timestamp=int(time.time()) - 240)
        )
    assert ok.status_code == 200
    assert len(stack.upstream.calls) == 1


async def test_replayed_nonce_is_refused_on_the_same_and_on_another_replica(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    replica = stack.start_gateway()
    body = b'{"amount_minor":100,"currency":"CNY"}'
    headers = signed_headers(stack, "POST", "/v1/payments", body)
    async with httpx.AsyncClient() as raw:
        first = await raw.post(f"{stack.url}/v1/payments", content=body, headers=headers)
        again = await raw.post(f"{stack.url}/v1/payments", content=body, headers=headers)
        elsewhere = await raw.post(f"{replica.base_url}/v1/payments", content=body, headers=headers)
        # Same nonce, fresh signature on a new timestamp is still the same nonce: refused.
        fresh_sig = signed_headers(
            stack, "POST", "/v1/payments", body, nonce=headers["Authorization"].split("nonce=")[1].split(",")[0]
        )
        resigned = await raw.post(f"{replica.base_url}/v1/payments", content=body, headers=fresh_sig)
    assert first.status_code == 201, first.text
    for response in (again, elsewhere, resigned):
        assert response.status_code == 401
        assert problem(response) == "nonce_reused"
    assert len(stack.upstream.payments) == 1


async def test_revoked_and_rotated_keys(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    admin = stack.admin()
    b = await stack.new_merchant()
    juhe_b = stack.merchant(b["api_key"]["key_id"], b["api_key"]["secret"])
    await juhe_b.payments.create(**PAYMENT)

    rotated = await admin.request(
        "POST", f"/v1/platform/keys/{b['api_key']['key_id']}/rotate", json={"overlap_seconds": 3600}
    )
    new_key = rotated["new_key"]
    assert rotated["old_key"]["replaced_by"] == new_key["key_id"]
    await juhe_b.payments.create(**PAYMENT)  # the old key works during the overlap
    juhe_b2 = stack.merchant(new_key["key_id"], new_key["secret"])
    await juhe_b2.payments.create(**PAYMENT)
    assert len(stack.upstream.payments) == 3

    await admin.request("POST", f"/v1/platform/keys/{new_key['key_id']}/rotate", json={"overlap_seconds": 0})
    with pytest.raises(AuthenticationError) as expired:
        await juhe_b2.payments.create(**PAYMENT)
    assert expired.value.code == "api_key_expired"

    revoked = await admin.request("POST", f"/v1/platform/keys/{b['api_key']['key_id']}/revoke")
    assert revoked["status"] == "revoked"
    with pytest.raises(AuthenticationError) as refused:
        await juhe_b.payments.create(**PAYMENT)
    assert refused.value.code == "api_key_revoked"
    assert len(stack.upstream.payments) == 3


async def test_cross_merchant_read_and_write_are_404(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    juhe_a = stack.merchant()
    b = await stack.new_merchant()
    juhe_b = stack.merchant(b["api_key"]["key_id"], b["api_key"]["secret"])
    payment_a = await juhe_a.payments.create(**PAYMENT)
    payment_b = await juhe_b.payments.create(amount_minor=1, currency="CNY")

    with pytest.raises(NotFoundError) as read:
        await juhe_b.payments.retrieve(payment_a["id"])
    assert read.value.code == "not_found"
    with pytest.raises(NotFoundError):
        await juhe_b.payments.action(payment_a["id"], "close")
    assert stack.upstream.payments[payment_a["id"]]["status"] == "created"
    listed_b = [p["id"] async for p in juhe_b.payments.list()]
    assert listed_b == [payment_b["id"]]
    closed = await juhe_a.payments.action(payment_a["id"], "close")
    assert closed["status"] == "closed"


async def test_idempotent_replay_conflict_and_missing_key(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    replica = stack.start_gateway()
    juhe = stack.merchant()
    first = await juhe.request_raw("POST", "/v1/payments", json=PAYMENT, idempotency_key="order-42")
    assert first.status == 201 and not first.replayed
    # Another replica, another nonce, same key and body: the stored first response, marked as a replay.
    replay = await juhe.request_raw("POST", "/v1/payments", json=PAYMENT, idempotency_key="order-42")
    assert replay.replayed and replay.status == 201 and replay.data == first.data
    async with httpx.AsyncClient() as raw:
        body = b'{"amount_minor":8888,"currency":"CNY"}'
        headers = signed_headers(stack, "POST", "/v1/payments", body)
        headers["Idempotency-Key"] = "order-42"
        other_replica = await raw.post(f"{replica.base_url}/v1/payments", content=body, headers=headers)
        no_key = signed_headers(stack, "POST", "/v1/payments", body)
        del no_key["Idempotency-Key"]
        missing = await raw.post(f"{stack.url}/v1/payments", content=body, headers=no_key)
    assert other_replica.status_code == 201 and other_replica.headers["idempotent-replayed"] == "true"
    assert other_replica.json() == first.data
    assert missing.status_code == 400 and problem(missing) == "idempotency_key_missing"

    with pytest.raises(IdempotencyError) as reused:
        await juhe.request("POST", "/v1/payments", json={**PAYMENT, "amount_minor": 1}, idempotency_key="order-42")
    assert reused.value.code == "idempotency_key_reused" and reused.value.status == 409
    assert len(stack.upstream.payments) == 1
    # Keys are per merchant: merchant B's "order-42" is its own.
    b = await stack.new_merchant()
    juhe_b = stack.merchant(b["api_key"]["key_id"], b["api_key"]["secret"])
    other = await juhe_b.request_raw("POST", "/v1/payments", json=PAYMENT, idempotency_key="order-42")
    assert not other.replayed and other.data["merchant_id"] == b["merchant_id"]
    assert len(stack.upstream.payments) == 2


async def test_concurrent_request_with_a_key_in_progress_is_409_and_the_sdk_waits_it_out(
    make_stack: StackFactory,
) -> None:
    stack: Stack = await make_stack()
    juhe = stack.merchant()
    slow = asyncio.create_task(
        juhe.request_raw("POST", "/v1/payments", json={**PAYMENT, "delay_seconds": 1.0}, idempotency_key="slow-1")
    )
    for _ in range(500):  # until the first request is inside the upstream
        if stack.upstream.calls:
            break
        await asyncio.sleep(0.01)
    with pytest.raises(IdempotencyError) as busy:
        await juhe.request("POST", "/v1/payments", json={**PAYMENT, "delay_seconds": 1.0}, idempotency_key="slow-1")
    assert busy.value.code == "idempotency_key_in_progress"
    assert busy.value.headers["retry-after"] == "1"
    patient = stack.merchant(max_retries=5)
    replay = await patient.request_raw(
        "POST", "/v1/payments", json={**PAYMENT, "delay_seconds": 1.0}, idempotency_key="slow-1"
    )
    original = await slow
    assert replay.replayed and replay.data == original.data
    assert len(stack.upstream.payments) == 1


async def test_rate_limit_is_shared_by_two_replicas_and_answers_429(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack(rate_limit_read_max=3, rate_limit_write_max=2, rate_limit_window_seconds=3600)
    replica = stack.start_gateway()
    here = stack.merchant()
    async with httpx.AsyncClient() as raw:
        statuses = []
        for i in range(5):
            url = stack.url if i % 2 == 0 else replica.base_url
            response = await raw.get(f"{url}/v1/payments", headers=signed_headers(stack, "GET", "/v1/payments", b""))
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert problem(response) == "rate_limited"
                # Sliding window: the rest of this window plus a third of the next (3 × (W − e′)/W + 1 ≤ 3).
                assert 1 <= int(response.headers["retry-after"]) <= 3600 + 1200
    assert statuses == [200, 200, 200, 429, 429]
    assert len(stack.upstream.calls) == 3
    # Another route class has its own budget.
    await here.payments.create(**PAYMENT)
    await here.payments.create(**PAYMENT)
    with pytest.raises(RateLimitError) as limited:
        await here.payments.create(**PAYMENT)
    assert limited.value.retry_after_seconds is not None and limited.value.retry_after_seconds >= 1
    assert len(stack.upstream.payments) == 2


async def test_rsa_signed_requests(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    c = await stack.new_merchant("RSA merchant", rsa_public_key_pem=public_pem)
    juhe = stack.merchant(c["api_key"]["key_id"], rsa_private_key_pem=private_pem)
    payment = await juhe.payments.create(**PAYMENT)
    assert payment["merchant_id"] == c["merchant_id"]
    impostor_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    impostor = stack.merchant(c["api_key"]["key_id"], rsa_private_key_pem=impostor_pem)
    with pytest.raises(AuthenticationError) as err:
        await impostor.payments.create(**PAYMENT)
    assert err.value.code == "signature_invalid"
    assert len(stack.upstream.payments) == 1


async def test_who_may_call_what(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    merchant = stack.merchant()
    with pytest.raises(PermissionDeniedError) as err:
        await merchant.request("POST", "/v1/platform/merchants", json={"name": "x"})
    assert err.value.code == "route_forbidden"
    user = stack.bearer(stack.keys["user_token"])
    with pytest.raises(PermissionDeniedError):
        await user.payments.retrieve("pay_1")
    with pytest.raises(AuthenticationError) as bad_token:
        await stack.bearer(stack.keys["user_token"] + "x").payments.retrieve("pay_1")
    assert bad_token.value.code == "token_invalid"
    with pytest.raises(AuthenticationError) as merchant_as_bearer:
        await stack.bearer(f"{stack.keys['key_id']}.{stack.keys['secret']}").payments.retrieve("pay_1")
    assert merchant_as_bearer.value.code == "authorization_malformed"
    # A platform operator may act for one of its merchants, and then sees that merchant's data only.
    payment = await merchant.payments.create(**PAYMENT)
    operator = stack.bearer(stack.keys["admin_key"], on_behalf_of="mch_demo")
    assert (await operator.payments.retrieve(payment["id"]))["id"] == payment["id"]
    with pytest.raises(PermissionDeniedError):
        await stack.bearer(stack.keys["admin_key"], on_behalf_of="mch_not_ours").payments.retrieve(payment["id"])
    async with httpx.AsyncClient(base_url=stack.url) as raw:
        for path in ("/v1/route", "/v1/nothing-here", "/v1/internal/x"):
            response = await raw.get(path)
            assert response.status_code == 404 and problem(response) == "route_not_found"
    assert len(stack.upstream.calls) == 2


async def test_service_down_is_503_and_the_idempotency_key_is_released(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    juhe = stack.merchant()
    with pytest.raises(ServerError) as down:
        await juhe.request("POST", "/v1/coupons", json={"stock_id": "cps_1"}, idempotency_key="cpn-1")
    assert down.value.code == "upstream_unavailable" and down.value.status == 503
    with pytest.raises(ServerError) as again:
        await juhe.request("POST", "/v1/coupons", json={"stock_id": "cps_1"}, idempotency_key="cpn-1")
    assert again.value.code == "upstream_unavailable"  # not "in progress": the key was released


async def test_checkout_page_calls_are_counted_per_browser_only_when_the_web_process_names_it(
    make_stack: StackFactory,
) -> None:
    """Every open checkout page calls through the web process's one address: vouched for by its first-party
    token, the browser it names gets its own window; anyone else is counted by its address. (On loopback uvicorn
    itself takes X-Forwarded-For as the address — its default `forwarded_allow_ips` — so a forged header is not
    tried here: across hosts, as in Kubernetes, only the token makes the gateway read it.)"""
    from gateway.config import DEMO_WEB_CLIENT_TOKEN

    stack: Stack = await make_stack(rate_limit_write_max=2, rate_limit_window_seconds=3600)
    web = {"Authorization": f"Bearer {DEMO_WEB_CLIENT_TOKEN}"}
    page = "/v1/checkout/pages/cst_" + "a" * 40
    async with httpx.AsyncClient(base_url=stack.url) as raw:

        async def limited(headers: dict[str, str]) -> bool:
            response = await raw.get(page, headers=headers)
            return response.status_code == 429 and problem(response) == "rate_limited"

        first = [await limited({**web, "X-Forwarded-For": "203.0.113.1"}) for _ in range(3)]
        second = [await limited({**web, "X-Forwarded-For": "203.0.113.2"}) for _ in range(2)]
        anonymous = [await limited({}) for _ in range(3)]
        forged = await limited({"Authorization": "Bearer guessed"})
    assert first == [False, False, True]
    assert second == [False, False]  # another browser behind the same web process
    assert anonymous == [False, False, True] and forged  # one window: the caller's own address
