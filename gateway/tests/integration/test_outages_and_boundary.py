"""Through the gateway, over real HTTP: outages are 503 with a retryable code and a retry after recovery
runs at once (the failed request's idempotency key was released); an idempotency key's lease is short and
renewed while its request runs; hostile text is refused before anything is written; no answer carries an
internal address."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from juhe_sdk import IdempotencyError, JuheResponse, ServerError
from juhe_sdk.errors import InvalidRequestError, NotFoundError

from gateway.tests.integration.conftest import INTERNAL_SECRET, Stack, StackFactory
from gateway.tests.integration.servers import ThreadServer
from libs.common.db import asyncpg_dsn
from libs.common.testing.plugin import DatabaseFactory, Infra
from libs.common.testing.waiting import eventually
from libs.common.tests.database_outage import database_outage
from services.ledger.app import create_app as ledger_app

ACCOUNT = {"holder_id": "mch_demo", "currency": "CNY", "kind": "merchant_pending", "code": "2201"}
PAYMENT = {"amount_minor": 8888, "currency": "CNY"}
DEADLINE_SECONDS = 60.0


async def _with_ledger(
    make_stack: StackFactory,
    migrated_database: DatabaseFactory,
    service_settings: Callable[..., Any],
    **overrides: Any,
) -> tuple[Stack, str]:
    """A gateway whose `ledger` upstream is the real ledger service on its own database."""
    ledger_db = await migrated_database("ledger")
    settings = service_settings("ledger", database_url=ledger_db, role="api", internal_token_secret=INTERNAL_SECRET)
    ledger = ThreadServer(ledger_app(settings)).start()
    stack: Stack = await make_stack(ledger_url=ledger.base_url, **overrides)
    stack.servers.insert(0, ledger)  # stopped last
    return stack, ledger_db


async def test_database_outage_is_503_and_the_same_key_succeeds_at_once_after_recovery(
    make_stack: StackFactory,
    migrated_database: DatabaseFactory,
    service_settings: Callable[..., Any],
    juhe_infra: Infra,
) -> None:
    stack, ledger_db = await _with_ledger(make_stack, migrated_database, service_settings)
    admin = stack.admin()
    async with database_outage(juhe_infra.server_url, ledger_db):
        for _ in range(2):
            with pytest.raises(ServerError) as down:
                await admin.request("POST", "/v1/accounts", json=ACCOUNT, idempotency_key="acc-outage")
            assert down.value.status == 503 and down.value.code == "database_unavailable" and down.value.retryable
            assert int(down.value.headers["retry-after"]) >= 1
    # Back: the same key runs at once (its reservation was released when the service answered 503).
    created = await admin.request_raw("POST", "/v1/accounts", json=ACCOUNT, idempotency_key="acc-outage")
    assert created.status == 201 and not created.replayed
    again = await admin.request_raw("POST", "/v1/accounts", json=ACCOUNT, idempotency_key="acc-outage")
    assert again.replayed and again.data["id"] == created.data["id"]
    listed = await admin.request("GET", "/v1/accounts", params={"holder_id": "mch_demo"})
    assert [a["id"] for a in listed["data"]] == [created.data["id"]]  # written once, nothing during the outage

    # The gateway's own database down: its guards answer 503 database_unavailable too, then recover.
    merchant = stack.merchant()
    async with database_outage(juhe_infra.server_url, stack.database_url):
        with pytest.raises(ServerError) as guard_down:
            await merchant.request("POST", "/v1/payments", json=PAYMENT, idempotency_key="pay-outage")
        assert guard_down.value.status == 503 and guard_down.value.code == "database_unavailable"
    assert stack.upstream.payments == {}
    paid = await merchant.request_raw("POST", "/v1/payments", json=PAYMENT, idempotency_key="pay-outage")
    assert paid.status == 201


async def _key_row(stack: Stack, key: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(asyncpg_dsn(stack.database_url))
    try:
        return await conn.fetchrow(
            "SELECT state, lock_token, locked_until <= clock_timestamp() + make_interval(secs => $2) AS short_lease"
            " FROM idempotency_records WHERE key = $1",
            key,
            float(stack.settings.idempotency_lock_seconds),
        )
    finally:
        await conn.close()


async def _abandon(stack: Stack, key: str) -> None:
    """As if the gateway holding `key` died: its token is no longer anyone's, so nobody renews the lease."""
    conn = await asyncpg.connect(asyncpg_dsn(stack.database_url))
    try:
        await conn.execute("UPDATE idempotency_records SET lock_token = 'dead-gateway' WHERE key = $1", key)
    finally:
        await conn.close()


async def _wait_for_row(stack: Stack, key: str) -> asyncpg.Record:
    return await eventually(lambda: _key_row(stack, key), f"key {key} reserved", timeout_seconds=DEADLINE_SECONDS)


async def test_a_running_request_keeps_its_key_and_an_abandoned_one_is_taken_over(make_stack: StackFactory) -> None:
    # The upstream answers after two leases and more, so only renewals (every third of a lease) keep the key;
    # a renewal may come late by two thirds of a lease on a loaded machine before anything changes.
    lease = 4.0
    stack: Stack = await make_stack(idempotency_lock_seconds=lease, upstream_timeout_seconds=60)
    merchant = stack.merchant()
    slow = {**PAYMENT, "delay_seconds": 9}

    first = asyncio.create_task(merchant.request_raw("POST", "/v1/payments", json=slow, idempotency_key="slow-1"))
    row = await _wait_for_row(stack, "slow-1")
    assert row["state"] == "in_progress" and row["short_lease"]
    refused = 0
    while not first.done():  # every retry while it runs (across several leases) is "in progress"
        try:
            retried = await merchant.request_raw("POST", "/v1/payments", json=slow, idempotency_key="slow-1")
        except IdempotencyError as exc:
            assert exc.code == "idempotency_key_in_progress"
            refused += 1
        else:
            # The first request was answered (and its answer stored) after `first.done()` was read, before its
            # client task saw the answer: a loaded machine widens that window. Its stored answer is all a retry
            # may get; a retry that ran the request again (a takeover) is not a replay.
            assert retried.replayed, "a retry took over the key of a request that was still running"
            break
        await asyncio.sleep(0.2)
    answered = await first
    assert answered.status == 201 and refused >= 1 and len(stack.upstream.payments) == 1
    replay = await merchant.request_raw("POST", "/v1/payments", json=slow, idempotency_key="slow-1")
    assert replay.replayed and replay.data["id"] == answered.data["id"]

    # A gateway that died mid-request renews nothing: a retry takes its key over once the short lease ran out.
    second = asyncio.create_task(merchant.request_raw("POST", "/v1/payments", json=slow, idempotency_key="slow-2"))
    await _wait_for_row(stack, "slow-2")
    await _abandon(stack, "slow-2")

    async def take_over() -> JuheResponse | None:
        try:
            return await merchant.request_raw("POST", "/v1/payments", json=slow, idempotency_key="slow-2")
        except IdempotencyError as exc:
            assert exc.code == "idempotency_key_in_progress"
            return None

    taken = await eventually(
        take_over, "the abandoned key released", timeout_seconds=DEADLINE_SECONDS, poll_seconds=0.2
    )
    assert taken.status == 201 and not taken.replayed
    assert (await second).status == 201  # the "dead" one's answer still reaches its own client


async def test_a_failed_request_frees_its_key_as_soon_as_the_gateway_database_is_back(
    make_stack: StackFactory, juhe_infra: Infra
) -> None:
    """Both down at once (one PostgreSQL behind everything): the service answers 503 while the gateway cannot
    release the key; the release is retried in the background, so the key is free as soon as the gateway's
    database is back, long before its (here one-minute) lease would have run out."""
    stack: Stack = await make_stack(idempotency_lock_seconds=60)
    merchant = stack.merchant()
    failing = {**PAYMENT, "delay_seconds": 2, "fail_after_delay": True}
    first = asyncio.create_task(merchant.request("POST", "/v1/payments", json=failing, idempotency_key="both"))
    await _wait_for_row(stack, "both")
    async with database_outage(juhe_infra.server_url, stack.database_url):
        with pytest.raises(ServerError) as failed:
            await first
        assert failed.value.code == "database_unavailable"  # the service's own answer, passed through

    async def retry_reaches_the_service() -> bool:
        try:
            await merchant.request("POST", "/v1/payments", json=failing, idempotency_key="both")
        except IdempotencyError as exc:
            assert exc.code == "idempotency_key_in_progress"
            return False
        except ServerError as exc:
            assert exc.code == "database_unavailable"  # the retry reached the service again
            return True
        pytest.fail("the failing upstream answered 2xx")

    await eventually(  # well within the 60 s lease
        retry_reaches_the_service,
        "the failed request's key released after recovery",
        timeout_seconds=DEADLINE_SECONDS / 2,
        poll_seconds=0.2,
    )
    assert len([c for c in stack.upstream.calls if c["method"] == "POST"]) == 2


HOSTILE_BODIES: list[dict[str, Any]] = [
    {**PAYMENT, "description": "lone \udfff"},
    {**PAYMENT, "description": "nul \x00"},
    {**PAYMENT, "\udfff": 1},
    {**PAYMENT, "metadata": {"a": [{"b": "\ud800"}]}},
]


async def test_hostile_text_is_refused_before_anything_is_written(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    merchant = stack.merchant()
    calls = len(stack.upstream.calls)
    for body in HOSTILE_BODIES:
        with pytest.raises(InvalidRequestError) as refused:
            await merchant.request("POST", "/v1/payments", json=body)
        assert refused.value.status == 422 and refused.value.code == "validation_failed"
    for path in ("/v1/payments?merchant_order_no=a%00b", "/v1/payments?q=%ED%BF%BF", "/v1/payments/pay_%00x"):
        with pytest.raises(InvalidRequestError) as refused:
            await merchant.request("GET", path)
        assert refused.value.code == "validation_failed", path
    assert len(stack.upstream.calls) == calls and stack.upstream.payments == {}

    # A NUL in a header cannot even be sent by an HTTP library; on the wire the gateway refuses it too.
    host, port = "127.0.0.1", stack.gateway.port
    raw = b"GET /v1/payments HTTP/1.1\r\nHost: x\r\nX-Note: a\x00b\r\nConnection: close\r\n\r\n"
    answer = await asyncio.to_thread(_exchange, host, port, raw)
    assert answer.split(b" ", 2)[1] in (b"400", b"401", b"422"), answer[:200]
    assert len(stack.upstream.calls) == calls


def _exchange(host: str, port: int, raw: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


async def test_no_redirect_and_no_internal_address_leaves_the_gateway(
    make_stack: StackFactory, migrated_database: DatabaseFactory, service_settings: Callable[..., Any]
) -> None:
    stack, _ = await _with_ledger(make_stack, migrated_database, service_settings)
    merchant = stack.merchant()
    payment = await merchant.request("POST", "/v1/payments", json=PAYMENT)
    internal = [server.base_url.split("://", 1)[1] for server in stack.servers if server is not stack.gateway]

    def no_internal_address(headers: dict[str, str]) -> None:
        for name, value in headers.items():
            assert not any(authority in value for authority in internal), (name, value)

    for client, path in (
        (merchant, f"/v1/payments/{payment['id']}/"),  # the cashier stand-in
        (stack.admin(), "/v1/accounts/"),  # the real ledger service
        (stack.admin(), "/v1/accounts/acc_x/"),
    ):
        with pytest.raises(NotFoundError) as missing:
            await client.request("GET", path)
        assert missing.value.code == "route_not_found", path
        assert "location" not in missing.value.headers
        no_internal_address(missing.value.headers)

    moved = await merchant.request_raw("GET", "/v1/payments/-/moved")
    assert moved.status == 303
    assert moved.headers["location"] == "/v1/payments?from=moved"
    assert moved.headers["content-location"] == "/v1/payments/-/moved"
    assert moved.headers["link"].startswith('</v1/payments?cursor=x>; rel="next", <https://docs.juhe.dev/payments>')
    no_internal_address(moved.headers)
