"""Revocation and rotation take effect at once on every replica, even while a replica's key cache is warm."""

from __future__ import annotations

import pytest
from juhe_sdk import AsyncClient, AuthenticationError

from gateway.tests.integration.conftest import Stack, StackFactory

PAYMENT = {"amount_minor": 8888, "currency": "CNY"}


def _on(stack: Stack, base_url: str, key: dict[str, str]) -> AsyncClient:
    client = AsyncClient(base_url, key_id=key["key_id"], secret=key["secret"], max_retries=0)
    stack.clients.append(client)
    return client


async def test_revoke_on_one_replica_refuses_the_next_request_on_another(make_stack: StackFactory) -> None:
    # A long cache: before, a revoked key kept working on B until its cached copy expired.
    stack: Stack = await make_stack(key_cache_ttl_seconds=60)
    replica_b = stack.start_gateway()
    b = await stack.new_merchant()
    on_a, on_b = _on(stack, stack.url, b["api_key"]), _on(stack, replica_b.base_url, b["api_key"])
    await on_a.payments.create(**PAYMENT)
    await on_b.payments.create(**PAYMENT)  # B has the key cached now
    assert [p async for p in on_b.payments.list()] != []

    revoked = await stack.admin().request("POST", f"/v1/platform/keys/{b['api_key']['key_id']}/revoke")
    assert revoked["status"] == "revoked"
    with pytest.raises(AuthenticationError) as write:
        await on_b.request("POST", "/v1/payments", json=PAYMENT, idempotency_key="after-revoke")
    assert write.value.code == "api_key_revoked" and write.value.status == 401
    with pytest.raises(AuthenticationError) as read:
        await on_b.request("GET", "/v1/payments")
    assert read.value.code == "api_key_revoked"
    assert len(stack.upstream.payments) == 2


async def test_rotation_ends_the_old_key_at_once_on_another_replica(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack(key_cache_ttl_seconds=60)
    replica_b = stack.start_gateway()
    b = await stack.new_merchant()
    old_on_b = _on(stack, replica_b.base_url, b["api_key"])
    await old_on_b.payments.create(**PAYMENT)

    admin = stack.admin()
    rotated = await admin.request(
        "POST", f"/v1/platform/keys/{b['api_key']['key_id']}/rotate", json={"overlap_seconds": 3600}
    )
    await old_on_b.payments.create(**PAYMENT)  # the overlap keeps the old key working everywhere
    new_on_b = _on(stack, replica_b.base_url, rotated["new_key"])
    await new_on_b.payments.create(**PAYMENT)

    await admin.request("POST", f"/v1/platform/keys/{rotated['new_key']['key_id']}/rotate", json={"overlap_seconds": 0})
    with pytest.raises(AuthenticationError) as expired:
        await new_on_b.payments.create(**PAYMENT)
    assert expired.value.code == "api_key_expired"
    assert len(stack.upstream.payments) == 3


async def test_a_revoked_platform_key_is_refused_on_every_replica(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack(key_cache_ttl_seconds=60)
    replica_b = stack.start_gateway()
    admin = stack.admin()
    second = await admin.request(
        "POST", f"/v1/platform/keys/{stack.keys['admin_key'].split('.')[0]}/rotate", json={"overlap_seconds": 3600}
    )
    on_b = AsyncClient(replica_b.base_url, token=stack.keys["admin_key"], max_retries=0)
    stack.clients.append(on_b)
    merchant = await on_b.request("GET", "/v1/platform/merchants/mch_demo")  # cached on B
    assert merchant["merchant_id"] == "mch_demo"
    new_admin = stack.bearer(second["new_key"]["token"])
    await new_admin.request("POST", f"/v1/platform/keys/{stack.keys['admin_key'].split('.')[0]}/revoke")
    with pytest.raises(AuthenticationError) as refused:
        await on_b.request("GET", "/v1/platform/merchants/mch_demo")
    assert refused.value.code == "api_key_revoked"
