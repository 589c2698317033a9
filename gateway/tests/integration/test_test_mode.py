"""Test mode: test and live keys, channel configurations and objects never mix (docs/test-mode.md).

The real gateway in front of the real cashier, with the Alipay sandbox as the channel, over real HTTP with real
signatures on fresh migrated databases; one set of processes for the module. The cashier is told that only
`127.0.0.1` is a sandbox host, so the same sandbox reached as `localhost` stands for a real channel: a live
configuration pointing there is accepted and really called, which lets the tests prove both directions.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from juhe_sdk import APIError, AsyncClient, NotFoundError

from gateway.app import create_app as gateway_app
from gateway.config import DEMO_WEB_CLIENT_TOKEN
from gateway.flows.seed import seed_demo_async
from gateway.tests.integration.with_cashier import AlipaySandbox, alipay
from libs.common.embedded import free_port
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.services import SERVICES
from libs.common.testing.infra import serve_app
from libs.common.testing.waiting import eventually
from services.cashier.app import create_app as cashier_app

__all__ = ["alipay"]  # the module's Alipay sandbox fixture

INTERNAL_SECRET = "test-mode-tests-internal-secret-0123456789"
PAYMENT = {"amount_minor": 1200, "currency": "CNY", "scene": "native_qr", "description": "Tea"}


@dataclass
class Env:
    url: str
    admin_key: str
    alipay: AlipaySandbox
    clients: list[AsyncClient] = field(default_factory=list)

    def client(self, **auth: Any) -> AsyncClient:
        client = AsyncClient(self.url, max_retries=0, **auth)
        self.clients.append(client)
        return client

    def admin(self) -> AsyncClient:
        return self.client(token=self.admin_key)

    def merchant(self, key: dict[str, Any]) -> AsyncClient:
        return self.client(key_id=key["key_id"], secret=key["secret"])

    def alipay_config(self, host: str, app: dict[str, Any] | None = None) -> dict[str, Any]:
        """An Alipay app (the module's by default), reached at `host` (127.0.0.1: a sandbox; localhost: a "real"
        channel)."""
        sandbox, app = self.alipay[0], app or self.alipay[1]
        return {
            "gateway_url": sandbox.base_url.replace("127.0.0.1", host) + "/gateway.do",
            "app_id": app["app_id"],
            "app_private_key_pem": app["app_private_key_pem"],
            "alipay_public_key_pem": app["alipay_public_key_pem"],
            "seller_id": app["seller_id"],
        }

    async def put_alipay(
        self, merchant_id: str, host: str, app: dict[str, Any] | None = None, **body: Any
    ) -> dict[str, Any]:
        answer: dict[str, Any] = await self.admin().request(
            "PUT",
            f"/v1/admin/merchants/{merchant_id}/channels/alipay",
            json={"priority": 1, "config": self.alipay_config(host, app), **body},
        )
        return answer

    async def trade_app(self, payment: dict[str, Any], app: dict[str, Any]) -> int:
        """Whether the payment's trade was opened with `app` at the Alipay sandbox: 200, or 404 (another app's)."""
        async with httpx.AsyncClient() as http:
            found = await http.get(
                f"{self.alipay[0].base_url}/control/trades/{payment['attempts'][0]['out_trade_no']}",
                params={"app_id": app["app_id"]},
            )
        return found.status_code

    async def merchant_with_both_keys(self) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """A new merchant, its first (test) key, and a live key made beside it."""
        created = await self.admin().request("POST", "/v1/platform/merchants", json={"name": "Mode Tea House"})
        merchant_id = created["merchant_id"]
        live = await self.admin().request("POST", f"/v1/platform/merchants/{merchant_id}/keys", json={"mode": "live"})
        return merchant_id, created["api_key"], live


@pytest.fixture(scope="module")
async def env(
    juhe_infra: Any, migrated_database: Any, tmp_path_factory: pytest.TempPathFactory, alipay: AlipaySandbox
) -> AsyncIterator[Env]:
    ports = {"gateway": free_port(), "cashier": free_port()}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    common = {"env": "test", "kafka_bootstrap_servers": juhe_infra.bootstrap, "internal_token_secret": INTERNAL_SECRET}
    gateway = SERVICES["gateway"].settings_class()(
        **common,
        database_url=await migrated_database("gateway"),
        role="api",
        port=ports["gateway"],
        cashier_url=urls["cashier"],
        key_cache_ttl_seconds=0,
        **{f"{name}_url": "http://127.0.0.1:9" for name in ("ledger", "routing", "settlement", "marketing")},
    )
    keys = await seed_demo_async(
        gateway.database_url, Path(tmp_path_factory.mktemp("keys")) / "keys.json", settings=gateway
    )
    cashier = SERVICES["cashier"].settings_class()(
        **common,
        database_url=await migrated_database("cashier"),
        role="api",
        port=ports["cashier"],
        public_base_url=urls["cashier"],
        gateway_url=urls["gateway"],
        sandbox_hosts=["127.0.0.1"],
    )
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(serve_app(cashier_app(cashier), port=ports["cashier"], name="the cashier"))
        await stack.enter_async_context(serve_app(gateway_app(gateway), port=ports["gateway"], name="the gateway"))
        built = Env(urls["gateway"], keys["admin_key"], alipay)
        try:
            yield built
        finally:
            for client in built.clients:
                await client.aclose()


async def test_keys_say_their_mode_and_creation_and_rotation_take_it(env: Env) -> None:
    merchant_id, test_key, live_key = await env.merchant_with_both_keys()
    assert test_key["mode"] == "test" and test_key["key_id"].startswith("key_test_")
    assert test_key["secret"].startswith("sk_test_")
    assert live_key["mode"] == "live" and live_key["key_id"].startswith("key_live_")
    assert live_key["secret"].startswith("sk_live_")

    # Both work at once; the merchant's record lists each with its mode.
    shown = await env.admin().request("GET", f"/v1/platform/merchants/{merchant_id}")
    assert {k["key_id"]: k["mode"] for k in shown["keys"]} == {test_key["key_id"]: "test", live_key["key_id"]: "live"}

    # A rotation keeps the mode unless told otherwise.
    rotated = await env.admin().request("POST", f"/v1/platform/keys/{live_key['key_id']}/rotate", json={})
    assert rotated["new_key"]["mode"] == "live" and rotated["new_key"]["key_id"].startswith("key_live_")
    with pytest.raises(APIError) as bad:
        await env.admin().request("POST", f"/v1/platform/merchants/{merchant_id}/keys", json={"mode": "staging"})
    assert bad.value.status == 422


async def test_test_keys_reach_only_sandbox_configs_and_live_keys_only_real_ones_side_by_side(env: Env) -> None:
    merchant_id, test_key, live_key = await env.merchant_with_both_keys()
    test, live = env.merchant(test_key), env.merchant(live_key)

    # A configuration at the sandbox is a test one (by default, from its endpoint).
    assert (await env.put_alipay(merchant_id, "127.0.0.1"))["mode"] == "test"
    paid_in_test = await test.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
    assert paid_in_test["livemode"] is False and paid_in_test["attempts"][0]["channel"] == "alipay"
    with pytest.raises(APIError) as refused:  # the live key finds no live configuration: the sandbox is not offered
        await live.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
    assert (refused.value.status, refused.value.code) == (422, "no_route_available")
    assert "live" in str(refused.value.problem.get("detail"))

    # The platform adds the live configuration (the real host, the merchant's live app) beside the test one, which
    # stays: the same channel of one merchant is configured in both modes at once.
    async with httpx.AsyncClient() as http:
        registered = await http.post(env.alipay[0].base_url + "/control/apps", json={})
    live_app, test_app = registered.json(), env.alipay[1]
    assert (await env.put_alipay(merchant_id, "localhost", live_app))["mode"] == "live"
    both = await env.admin().request("GET", f"/v1/admin/merchants/{merchant_id}/channels")
    assert sorted((c["channel"], c["mode"], c["version"]) for c in both) == [
        ("alipay", "live", 1),
        ("alipay", "test", 1),
    ]

    # The test key reaches the test configuration only, the live key the live one only (both ways).
    paid_test = await test.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
    paid_live = await live.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
    assert paid_test["livemode"] is False and paid_test["attempts"][0]["status"] == "processing"
    assert paid_live["livemode"] is True and paid_live["attempts"][0]["status"] == "processing"
    assert (await env.trade_app(paid_test, test_app), await env.trade_app(paid_test, live_app)) == (200, 404)
    assert (await env.trade_app(paid_live, live_app), await env.trade_app(paid_live, test_app)) == (200, 404)
    # Paid at the channel, each is settled by its own configuration's notification (the cashier here runs no poller).
    for paid, app, client in ((paid_test, test_app, test), (paid_live, live_app, live)):
        async with httpx.AsyncClient() as http:
            approved = await http.post(
                f"{env.alipay[0].base_url}/control/trades/{paid['attempts'][0]['out_trade_no']}/approve",
                params={"app_id": app["app_id"]},
            )
        assert approved.status_code == 200, approved.text

        async def succeeded(client: AsyncClient = client, paid: dict[str, Any] = paid) -> Any:
            read = await client.request("GET", f"/v1/payments/{paid['id']}")
            return read if read["status"] == "succeeded" else None

        await eventually(succeeded, f"the {paid['id']} payment settled by its notification")

    # Without its test configuration, the test key is refused rather than sent to the live one.
    assert (await env.put_alipay(merchant_id, "127.0.0.1", enabled=False))["mode"] == "test"
    with pytest.raises(APIError) as refused:
        await test.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
    assert (refused.value.status, refused.value.code) == (422, "no_route_available")
    assert "test" in str(refused.value.problem.get("detail"))
    await env.put_alipay(merchant_id, "127.0.0.1")

    # Each key sees only its own mode's objects: the other mode's id is a 404, lists hold one mode.
    assert (await test.request("GET", f"/v1/payments/{paid_in_test['id']}"))["livemode"] is False
    for client, other in ((test, paid_live["id"]), (live, paid_in_test["id"])):
        with pytest.raises(NotFoundError):
            await client.request("GET", f"/v1/payments/{other}")
        with pytest.raises(NotFoundError):
            await client.request("GET", f"/v1/payments/{other}/refunds")
        with pytest.raises(NotFoundError):
            await client.request("POST", f"/v1/payments/{other}/close")
    assert [p["id"] for p in (await test.request("GET", "/v1/payments"))["data"]] == [
        paid_test["id"],
        paid_in_test["id"],
    ]
    assert [p["id"] for p in (await live.request("GET", "/v1/payments"))["data"]] == [paid_live["id"]]
    with pytest.raises(APIError) as other_mode:  # a key cannot ask for the other mode's list
        await test.request("GET", "/v1/payments", params={"livemode": "true"})
    assert (other_mode.value.status, other_mode.value.code) == (422, "validation_failed")
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    for client, expected in ((test, [paid_in_test, paid_test]), (live, [paid_live])):  # figures count one mode
        rows = (await client.request("GET", "/v1/payments/aggregates", params={"created_from": since}))["data"]
        assert sum(r["count"] for r in rows) == len(expected)
        assert sum(r["amount_minor"] for r in rows) == sum(p["amount_minor"] for p in expected)
    order_no = paid_in_test["merchant_order_no"]
    assert (await live.request("GET", "/v1/payments", params={"merchant_order_no": order_no}))["data"] == []
    with pytest.raises(APIError) as reused:  # an order number of the other mode is not reused, nor its payment shown
        await live.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": order_no})
    assert reused.value.code == "duplicate_merchant_order" and paid_in_test["id"] not in str(reused.value.problem)

    # Checkout sessions carry the mode of the key that made them too.
    session = await test.request(
        "POST",
        "/v1/checkout/sessions",
        json={
            "merchant_order_no": uuid.uuid4().hex,
            "amount_minor": 500,
            "currency": "CNY",
            "description": "Cake",
            "return_url": "https://shop.example/done",
        },
    )
    assert session["livemode"] is False
    with pytest.raises(NotFoundError):
        await live.request("GET", f"/v1/checkout/sessions/{session['id']}")


async def test_a_config_whose_endpoints_contradict_its_mode_is_refused_and_nothing_changes(env: Env) -> None:
    merchant_id, _, _ = await env.merchant_with_both_keys()
    await env.put_alipay(merchant_id, "127.0.0.1")
    for host, mode in (("localhost", "test"), ("127.0.0.1", "live")):
        with pytest.raises(APIError) as refused:
            await env.put_alipay(merchant_id, host, mode=mode)
        assert (refused.value.status, refused.value.code) == (422, "channel_mode_mismatch")
    kept = await env.admin().request("GET", f"/v1/admin/merchants/{merchant_id}/channels")
    assert [(c["channel"], c["mode"], c["version"]) for c in kept] == [("alipay", "test", 1)]


async def test_a_public_client_cannot_set_the_mode(env: Env) -> None:
    """Client-sent internal headers never pass the gateway: a test key stays a test key whatever it sends, even a
    well-formed identity token claiming live mode (it lacks the internal secret's signature)."""
    merchant_id, test_key, _ = await env.merchant_with_both_keys()
    await env.put_alipay(merchant_id, "localhost")  # a live configuration only
    forged = mint_identity_token(
        "not-the-internal-secret-0123456789abcdef", key_id="forged", merchant_id=merchant_id, mode="live"
    )
    headers = {"X-Juhe-Mode": "live", "Juhe-Mode": "live", IDENTITY_HEADER: forged, "X-Juhe-Merchant-Id": merchant_id}
    with pytest.raises(APIError) as refused:
        await env.merchant(test_key).request(
            "POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex}, headers=headers
        )
    assert (refused.value.status, refused.value.code) == (422, "no_route_available")
    listed = await env.merchant(test_key).request("GET", "/v1/payments", headers=headers)
    assert listed["data"] == []


async def test_webhook_endpoints_events_and_refunds_stay_in_their_mode(env: Env) -> None:
    """A test payment's event goes to the merchant's test endpoint only and is listed to the test key only; its
    refund is a test refund."""
    merchant_id, test_key, live_key = await env.merchant_with_both_keys()
    test, live = env.merchant(test_key), env.merchant(live_key)
    await env.put_alipay(merchant_id, "127.0.0.1")
    hook = {"url": "https://hooks.example/juhe", "enabled_events": ["*"]}
    test_endpoint = await test.request("POST", "/v1/webhook-endpoints", json=hook)
    live_endpoint = await live.request("POST", "/v1/webhook-endpoints", json=hook)
    assert (test_endpoint["livemode"], live_endpoint["livemode"]) == (False, True)
    assert [e["id"] for e in (await test.request("GET", "/v1/webhook-endpoints"))["data"]] == [test_endpoint["id"]]
    with pytest.raises(NotFoundError):
        await test.request("GET", f"/v1/webhook-endpoints/{live_endpoint['id']}")

    payment = await test.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
    sandbox, app = env.alipay
    async with httpx.AsyncClient() as http:
        approved = await http.post(
            f"{sandbox.base_url}/control/trades/{payment['attempts'][0]['out_trade_no']}/approve",
            params={"app_id": app["app_id"]},
        )
    assert approved.status_code == 200, approved.text

    async def queued() -> list[dict[str, Any]] | None:
        found = (await test.request("GET", f"/v1/payments/{payment['id']}/webhook-deliveries"))["data"]
        return found or None

    deliveries = await eventually(queued, "the payment.succeeded webhook is queued")
    assert {d["endpoint_id"] for d in deliveries} == {test_endpoint["id"]}  # never the live endpoint
    events = (await test.request("GET", "/v1/events"))["data"]
    assert [(e["type"], e["livemode"], e["data"]["id"]) for e in events] == [
        ("payment.succeeded", False, payment["id"])
    ]
    assert (await live.request("GET", "/v1/events"))["data"] == []
    with pytest.raises(NotFoundError):
        await live.request("GET", f"/v1/events/{events[0]['id']}")
    with pytest.raises(NotFoundError):
        await live.request("GET", f"/v1/webhook-deliveries/{deliveries[0]['id']}")

    refund = await test.request("POST", f"/v1/payments/{payment['id']}/refunds", json={"amount_minor": 200})
    assert refund["livemode"] is False
    with pytest.raises(NotFoundError):
        await live.request("GET", f"/v1/refunds/{refund['id']}")


async def _staff_session(env: Env, raw: httpx.AsyncClient, role: str, merchant_id: str | None = None) -> dict[str, str]:
    """A console session of a new member: a merchant's (`merchant_id`) or an operator (who sets up TOTP)."""
    web = {"Authorization": f"Bearer {DEMO_WEB_CLIENT_TOKEN}"}
    body = {
        "kind": "merchant" if merchant_id else "operator",
        "merchant_id": merchant_id,
        "role": role,
        "email": f"{uuid.uuid4().hex[:8]}@mode.example",
    }
    invited = await raw.post("/v1/platform/staff", json=body, headers={"Authorization": f"Bearer {env.admin_key}"})
    assert invited.status_code == 201, invited.text
    link = {"token": invited.json()["url"].split("token=", 1)[1], "purpose": "invitation"}
    extra = {}
    if merchant_id is None:
        details = (await raw.post("/v1/web/console-links/inspection", json=link, headers=web)).json()
        extra["totp_code"] = pyotp.TOTP(details["totp_secret"]).now()
    redeemed = await raw.post(
        "/v1/web/console-links/redemption",
        headers=web,
        json={**link, "password": "correct horse battery staple", **extra},
    )
    assert redeemed.status_code == 200, redeemed.text
    return {"Authorization": f"Bearer {redeemed.json()['session']['token']}"}


async def test_a_console_session_names_its_mode_and_a_key_cannot(env: Env) -> None:
    """A merchant console session has no key mode: the console names one (`Juhe-Mode`), and the link or endpoint it
    makes has that mode and the list it reads holds that mode only; without the header it sees both, each marked.
    A key sending the same header keeps its own mode (the test key's list stays test-only, its link is test)."""
    merchant_id, test_key, _ = await env.merchant_with_both_keys()
    async with httpx.AsyncClient(base_url=env.url) as raw:
        session = await _staff_session(env, raw, "owner", merchant_id)

        async def console(method: str, path: str, mode: str | None, **kwargs: Any) -> httpx.Response:
            headers = {**session, "Idempotency-Key": uuid.uuid4().hex, **({"Juhe-Mode": mode} if mode else {})}
            return await raw.request(method, path, headers=headers, **kwargs)

        link = {"amount_minor": 321, "currency": "CNY"}
        made = {}
        for mode in ("live", "test"):
            answer = await console("POST", "/v1/payment-links", mode, json={**link, "description": f"{mode} link"})
            assert answer.status_code == 201, answer.text
            made[mode] = answer.json()
            hook = {"url": f"https://hooks.example/{mode}", "enabled_events": ["*"]}
            endpoint = await console("POST", "/v1/webhook-endpoints", mode, json=hook)
            assert endpoint.status_code == 201 and endpoint.json()["livemode"] is (mode == "live"), endpoint.text
        assert (made["live"]["livemode"], made["test"]["livemode"]) == (True, False)
        for mode in ("live", "test"):
            links = (await console("GET", "/v1/payment-links", mode)).json()["data"]
            assert [x["description"] for x in links] == [f"{mode} link"]
            endpoints = (await console("GET", "/v1/webhook-endpoints", mode)).json()["data"]
            assert [e["url"] for e in endpoints] == [f"https://hooks.example/{mode}"]
        both = (await console("GET", "/v1/payment-links", None)).json()["data"]
        assert sorted((x["description"], x["livemode"]) for x in both) == [("live link", True), ("test link", False)]
        refused = await console("GET", "/v1/payment-links", "staging")
        assert (refused.status_code, refused.json()["code"]) == (422, "validation_failed")

    # A key's mode is its own: the header changes nothing for it.
    test = env.merchant(test_key)
    listed = await test.request("GET", "/v1/payment-links", headers={"Juhe-Mode": "live"})
    assert [x["description"] for x in listed["data"]] == ["test link"]
    kept = await test.request(
        "POST", "/v1/payment-links", json={**link, "description": "key link"}, headers={"Juhe-Mode": "live"}
    )
    assert kept["livemode"] is False


async def test_an_operator_switches_a_channel_configuration_without_its_secrets(env: Env) -> None:
    """`PATCH /v1/admin/merchants/{id}/channels/{channel}` through the gateway: an operator with
    platform.merchants.manage turns the test configuration off and on and moves its priority by the version read (a
    stale version is 409, nothing changed); the config and the live configuration beside it are untouched (test
    payments stop and resume, live ones go on); an operator without the permission and a merchant's key are refused."""
    merchant_id, test_key, live_key = await env.merchant_with_both_keys()
    await env.put_alipay(merchant_id, "127.0.0.1")
    async with httpx.AsyncClient() as http:
        live_app = (await http.post(env.alipay[0].base_url + "/control/apps", json={})).json()
    await env.put_alipay(merchant_id, "localhost", live_app)
    path = f"/v1/admin/merchants/{merchant_id}/channels/alipay"

    def configs(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {r["mode"]: r for r in rows}

    before = configs(await env.admin().request("GET", f"/v1/admin/merchants/{merchant_id}/channels"))
    test, live = env.merchant(test_key), env.merchant(live_key)
    async with httpx.AsyncClient(base_url=env.url) as raw:
        operations = await _staff_session(env, raw, "operations")
        support = await _staff_session(env, raw, "support")

        async def patch(session: dict[str, str], **body: Any) -> httpx.Response:
            return await raw.patch(path, json=body, headers={**session, "Idempotency-Key": uuid.uuid4().hex})

        off = await patch(operations, mode="test", version=before["test"]["version"], enabled=False, priority=7)
        assert off.status_code == 200, off.text
        assert (off.json()["enabled"], off.json()["priority"], off.json()["version"]) == (False, 7, 2)
        assert off.json()["config"] == before["test"]["config"]  # the secrets were not resent and are unchanged
        stale = await patch(operations, mode="test", version=before["test"]["version"], enabled=True)
        assert (stale.status_code, stale.json()["code"]) == (409, "channel_config_changed")
        live_off = await patch(operations, mode="live", version=1, enabled=False)
        assert live_off.status_code == 200  # the live one is a config of its own, at its own version
        back = await patch(operations, mode="live", version=2, enabled=True)
        assert back.status_code == 200 and back.json()["enabled"] is True
        refused = await patch(support, mode="test", version=2, enabled=True)
        assert (refused.status_code, refused.json()["code"]) == (403, "route_forbidden")
        absent = await raw.patch(
            f"/v1/admin/merchants/{merchant_id}/channels/wechatpay",
            headers=operations,
            json={"mode": "test", "version": 1, "enabled": True},
        )
        assert (absent.status_code, absent.json()["code"]) == (404, "channel_config_not_found")
        with pytest.raises(APIError) as bad:
            await test.request("PATCH", path, json={"mode": "test", "version": 2, "enabled": True})
        assert bad.value.status in (403, 404)  # a merchant's key never reaches the platform's admin routes

        with pytest.raises(APIError) as off_now:  # the test payments stop; the live ones go on
            await test.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
        assert off_now.value.code == "no_route_available"
        paid_live = await live.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
        assert paid_live["livemode"] is True
        on = await patch(operations, mode="test", version=2, enabled=True)
        assert on.status_code == 200 and on.json()["version"] == 3
    paid = await test.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
    assert paid["attempts"][0]["status"] == "processing"  # the unchanged keys still sign at the sandbox
    after = configs(await env.admin().request("GET", f"/v1/admin/merchants/{merchant_id}/channels"))
    assert after["test"]["config"] == before["test"]["config"] and after["live"]["config"] == before["live"]["config"]
