"""The identity sandbox over real HTTP: strict signatures, rules, held requests, signed callbacks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from sandboxes.common.testing import SandboxProcess, free_port

SECRET = "sandbox-test-secret"


def sign(timestamp: int, body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    env = {
        "JUHE_DATA_DIR": str(tmp_path_factory.mktemp("identity")),
        "JUHE_SANDBOX_NOTIFY_SCALE": "0.001",
        "JUHE_SANDBOX_IDENTITY_SECRET": SECRET,
    }
    with SandboxProcess("sandboxes.identity", port_env="JUHE_SANDBOX_IDENTITY_PORT", env=env) as process:
        yield process


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A callback receiver on a real port that records what arrives."""
    received: list[tuple[dict[str, str], bytes]] = []
    app = FastAPI()

    @app.post("/cb")
    async def cb(request: Request) -> dict[str, str]:
        received.append((dict(request.headers), await request.body()))
        return {"ok": "yes"}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):  # bounded wait for the port to listen
        if server.started:
            break
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}/cb", received
    server.should_exit = True
    await task


def request_body(request_id: str, callback_url: str, **extra: Any) -> bytes:
    body = {
        "request_id": request_id,
        "holder_type": "person",
        "name": "张三",
        "document_number": "11010519491231002X",
        "callback_url": callback_url,
        **extra,
    }
    return json.dumps(body).encode()


async def post(
    client: httpx.AsyncClient, body: bytes, *, secret: str = SECRET, timestamp: int | None = None
) -> httpx.Response:
    ts = timestamp or int(time.time())
    headers = {
        "content-type": "application/json",
        "X-Identity-Timestamp": str(ts),
        "X-Identity-Signature": sign(ts, body, secret),
    }
    return await client.post("/v1/verifications", content=body, headers=headers)


async def wait_for(received: list[Any], count: int) -> None:
    for _ in range(200):
        if len(received) >= count:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"expected {count} callbacks, got {len(received)}")


async def test_strict_signature_and_signed_verdicts(sandbox: SandboxProcess, receiver: Any) -> None:
    url, received = receiver
    async with httpx.AsyncClient(base_url=sandbox.base_url) as client:
        await client.put("/control/rules", json={"reject_names": {"李四": "name_mismatch"}})
        assert (await post(client, request_body("r1", url), secret="wrong")).status_code == 401
        assert (await post(client, request_body("r1", url), timestamp=int(time.time()) - 3600)).status_code == 401
        assert (await post(client, b'{"request_id": "r1"}')).status_code == 422
        r = await post(client, request_body("r1", url))
        assert r.status_code == 202 and r.json()["status"] == "approved", r.text
        r = await post(client, request_body("r2", url, name="李四"))
        assert r.json()["status"] == "rejected"
        bad_check = request_body("r3", url, document_number="110105194912310021")
        assert (await post(client, bad_check)).json()["status"] == "rejected"
        await wait_for(received, 3)
        verdicts = {}
        for headers, body in received:
            assert sign(int(headers["x-identity-timestamp"]), body) == headers["x-identity-signature"]
            doc = json.loads(body)
            verdicts[doc["request_id"]] = (doc["result"], doc["reason"])
        assert verdicts == {
            "r1": ("approved", None),
            "r2": ("rejected", "name_mismatch"),
            "r3": ("rejected", "document_invalid"),
        }

        await client.put("/control/rules", json={"default": "hold"})
        assert (await post(client, request_body("r4", url))).json()["status"] == "held"
        await asyncio.sleep(0.1)
        assert len(received) == 3  # a held request sends nothing until decided
        r = await client.post("/control/verifications/r4/reject", json={"reason": "photo_unclear"})
        assert r.status_code == 200
        assert (await client.post("/control/verifications/r4/approve", json={})).status_code == 409
        await wait_for(received, 4)
        assert json.loads(received[3][1])["reason"] == "photo_unclear"
        assert (await post(client, request_body("r4", url))).json()["replayed"] is True


def merchant_check(check_id: str, **changes: Any) -> bytes:
    body: dict[str, Any] = {
        "check_id": check_id,
        "entity_type": "company",
        "legal_name": "杭州茶馆有限公司",
        "business_licence_number": "91350100M000100Y43",
        "legal_representative": {"name": "张三", "id_number": "11010519491231002X"},
        "bank_account": {"account_name": "杭州茶馆有限公司", "account_number": "6222021234567890"},
    }
    body.update(changes)
    return json.dumps(body).encode()


async def check(client: httpx.AsyncClient, body: bytes, *, secret: str = SECRET) -> httpx.Response:
    ts = int(time.time())
    headers = {
        "content-type": "application/json",
        "X-Identity-Timestamp": str(ts),
        "X-Identity-Signature": sign(ts, body, secret),
    }
    return await client.post("/v1/merchant-checks", content=body, headers=headers)


async def test_merchant_checks_list_every_finding_decide_once_and_hold_for_review(sandbox: SandboxProcess) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as client:
        await client.put("/control/rules", json={"bank_account_names": {"6222021234567890": "某某贸易有限公司"}})
        assert (await check(client, merchant_check("m0"), secret="wrong")).status_code == 401
        assert (await check(client, merchant_check("m0", entity_type="trust"))).status_code == 422
        other_account = {"account_name": "杭州茶馆有限公司", "account_number": "6222020000000001"}
        approved = await check(client, merchant_check("m1", bank_account=other_account))
        assert approved.json() == {"check_id": "m1", "result": "approved", "reasons": []}
        # A wrong licence check character, a wrong ID check character and another holder at the bank: all listed.
        bad = merchant_check(
            "m2",
            business_licence_number="91350100M000100Y44",
            legal_representative={"name": "张三", "id_number": "110105194912310021"},
        )
        rejected = (await check(client, bad)).json()
        assert rejected["result"] == "rejected"
        assert [r["code"] for r in rejected["reasons"]] == [
            "business_licence_invalid",
            "id_number_invalid",
            "bank_account_name_mismatch",
        ]
        # One verdict per check: the same id with a good body still answers the first verdict.
        again = (await check(client, merchant_check("m2"))).json()
        assert again["result"] == "rejected"
        unlicensed = merchant_check("m3", business_licence_number=None, bank_account=other_account)
        no_licence = (await check(client, unlicensed)).json()
        assert [r["code"] for r in no_licence["reasons"]] == ["business_licence_missing"]

        await client.put("/control/rules", json={"hold_documents": ["91350100M000100Y43"]})
        assert (await check(client, merchant_check("m4"))).json()["result"] == "held"
        decided = await client.post("/control/merchant-checks/m4/approve", json={})
        assert decided.status_code == 200 and decided.json()["result"] == "approved"
        ts = int(time.time())
        read = await client.get(
            "/v1/merchant-checks/m4", headers={"X-Identity-Timestamp": str(ts), "X-Identity-Signature": sign(ts, b"")}
        )
        assert read.json()["result"] == "approved"
        assert (await client.post("/control/merchant-checks/m4/reject", json={})).status_code == 409
        await client.put("/control/rules", json={})
