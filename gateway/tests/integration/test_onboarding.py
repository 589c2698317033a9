"""One-call merchant onboarding and suspension, through two real gateway replicas in front of the real cashier,
routing, settlement and ledger, with the identity sandbox doing KYC and the Alipay sandbox as the channel.

Everything over real HTTP with real signatures on fresh migrated databases; one set of processes for the
module. Replica A runs the gateway's worker (it finishes onboardings the request left), replica B only serves.
Both cache key material for 60 s, so nothing here passes thanks to a cold cache.
"""

from __future__ import annotations

import contextlib
import importlib
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from juhe_sdk import (
    AsyncClient,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from juhe_sdk.webhooks import SIGNATURE_HEADER, construct_event
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.flows.seed import seed_demo_async
from gateway.tests.integration.test_console_staff import _operator
from gateway.tests.integration.with_cashier import AlipaySandbox, alipay
from libs.common.embedded import free_port
from libs.common.kafka import ensure_platform_topics
from libs.common.services import SERVICES
from libs.common.testing.infra import serve_app
from libs.common.testing.waiting import eventually
from sandboxes.common.testing import SandboxProcess
from sandboxes.identity.app import IdentitySettings
from sandboxes.identity.app import create_app as identity_app
from services.cashier.tests.integration.flows.conftest import WebhookReceiver, serving_receivers

__all__ = ["alipay"]  # the module's Alipay sandbox fixture

INTERNAL_SECRET = "onboarding-tests-internal-secret-0123456789"
IDENTITY_SECRET = "onboarding-tests-identity-secret"
ROUTE_ID = "ali_onb"
WECHAT_ROUTE_ID = "wx_sp_onb"  # the platform's WeChat Pay service-provider route
SP_MCHID, SP_APPID = "1900000100", "wx8888888888888888"
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
RESIDENT_ID = "11010519491231002X"
PAYMENT = {"amount_minor": 1200, "currency": "CNY", "scene": "native_qr", "description": "Tea"}


def new_uscc() -> str:
    """A unified social credit code with a right check character (GB 32100), different on every call: the ledger
    keeps one merchant holder per licence."""
    body = "91350100" + "".join(secrets.choice("0123456789") for _ in range(9))
    total = sum(USCC_ALPHABET.index(c) * pow(3, i, 31) for i, c in enumerate(body))
    return body + USCC_ALPHABET[(31 - total % 31) % 31]


@dataclass
class Env:
    a: str  # replica A (with the worker)
    b: str  # replica B
    admin_key: str
    identity: IdentitySandbox
    alipay: AlipaySandbox
    receiver: WebhookReceiver
    gateway_db: str
    clients: list[AsyncClient] = field(default_factory=list)

    def admin(self, base_url: str | None = None) -> AsyncClient:
        client = AsyncClient(base_url or self.a, token=self.admin_key, max_retries=0)
        self.clients.append(client)
        return client

    def merchant(self, base_url: str, key: dict[str, str]) -> AsyncClient:
        client = AsyncClient(base_url, key_id=key["key_id"], secret=key["secret"], max_retries=0)
        self.clients.append(client)
        return client

    def body(self, **changes: Any) -> dict[str, Any]:
        """A complete onboarding request for a company taking Alipay on the module's route."""
        sandbox, app = self.alipay
        config = {
            "gateway_url": sandbox.base_url + "/gateway.do",
            "app_id": app["app_id"],
            "app_private_key_pem": app["app_private_key_pem"],
            "alipay_public_key_pem": app["alipay_public_key_pem"],
            "seller_id": app["seller_id"],
        }
        body: dict[str, Any] = {
            "merchant_id": f"mch_onb{uuid.uuid4().hex[:10]}",
            "legal_name": "杭州茶馆有限公司",
            "display_name": "West Lake Tea House",
            "entity_type": "company",
            "industry_code": "5812",
            "business_licence_number": new_uscc(),
            "legal_representative": {"name": "张三", "id_number": RESIDENT_ID},
            "contact": {"name": "李四", "email": "ops@tea.example", "phone": "+8613800138000"},
            "settlement_account": {
                "account_name": "杭州茶馆有限公司",
                "account_number": "6222021234567890",
                "bank_name": "ICBC Hangzhou",
            },
            "channels": [
                {"channel": "alipay", "route_id": ROUTE_ID, "sub_merchant_id": app["seller_id"], "config": config}
            ],
            "settlement": {"cycle": {"kind": "t_plus", "days": 1}, "platform_fee_rate_bps": 30},
            "webhook_url": self.receiver.url,
        }
        body.update(changes)
        return body

    async def identity_rules(self, **rules: Any) -> None:
        async with httpx.AsyncClient() as http:
            (await http.put(self.identity.base_url + "/control/rules", json=rules)).raise_for_status()


def create_app(service: str, settings: Any) -> Any:
    return importlib.import_module(f"{SERVICES[service].module}.app").create_app(settings)


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with serving_receivers(0) as (hooks,):
        yield hooks


@pytest.fixture(scope="module")
def wechatpay_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """The WeChat Pay sandbox with the platform registered as a service provider (服务商) and two sub-merchants:
    (its URL, the provider's registration with its keys)."""
    env = {"JUHE_DATA_DIR": str(tmp_path_factory.mktemp("wechatpay")), "JUHE_SANDBOX_NOTIFY_SCALE": "0.001"}
    with SandboxProcess("sandboxes.wechatpay", port_env="JUHE_SANDBOX_WECHATPAY_PORT", env=env) as sandbox:
        registered = httpx.post(
            f"{sandbox.base_url}/control/merchants",
            json={
                "mchid": SP_MCHID,
                "appid": SP_APPID,
                "generate_key_pair": True,
                "sub_merchants": [{"sub_mchid": "1900000111"}, {"sub_mchid": "1900000112"}],
            },
        )
        registered.raise_for_status()
        yield sandbox.base_url, registered.json()


@dataclass(frozen=True)
class IdentitySandbox:
    base_url: str


@pytest.fixture(scope="module")
async def identity(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[IdentitySandbox]:
    """The identity sandbox served in this process (no interpreter to start: it is a plain ASGI app)."""
    settings = IdentitySettings(secret=IDENTITY_SECRET, data_dir=str(tmp_path_factory.mktemp("identity")))
    async with serve_app(identity_app(settings), name="identity sandbox") as base_url:
        yield IdentitySandbox(base_url)


@pytest.fixture(scope="module")
async def env(
    juhe_infra: Any,
    migrated_database: Any,
    tmp_path_factory: pytest.TempPathFactory,
    alipay: AlipaySandbox,
    identity: IdentitySandbox,
    receiver: WebhookReceiver,
) -> AsyncIterator[Env]:
    namespace = f"t{uuid.uuid4().hex[:10]}."
    await ensure_platform_topics(juhe_infra.bootstrap, namespace)
    ports = {name: free_port() for name in ("a", "b", "cashier", "routing", "settlement", "ledger")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

    def settings(service: str, **values: Any) -> Any:
        return SERVICES[service].settings_class()(
            env="test",
            kafka_bootstrap_servers=juhe_infra.bootstrap,
            topic_namespace=namespace,
            log_json=True,
            internal_token_secret=INTERNAL_SECRET,
            **values,
        )

    gateway_db = await migrated_database("gateway")
    gateway = settings(
        "gateway",
        database_url=gateway_db,
        role="all",
        port=ports["a"],
        key_cache_ttl_seconds=60,
        cashier_url=urls["cashier"],
        routing_url=urls["routing"],
        settlement_url=urls["settlement"],
        ledger_url=urls["ledger"],
        marketing_url="http://127.0.0.1:9",
        migration_url="http://127.0.0.1:9",
        identity_base_url=identity.base_url,
        identity_secret=IDENTITY_SECRET,
        onboarding_interval_seconds=0.2,
    )
    keys = await seed_demo_async(gateway_db, Path(tmp_path_factory.mktemp("keys")) / "keys.json", settings=gateway)
    apps = {
        "ledger": settings("ledger", database_url=await migrated_database("ledger"), role="api", port=ports["ledger"]),
        "settlement": settings(
            "settlement", database_url=await migrated_database("settlement"), role="api", port=ports["settlement"]
        ),
        "routing": settings(
            "routing", database_url=await migrated_database("routing"), role="api", port=ports["routing"]
        ),
        "cashier": settings(
            "cashier",
            database_url=await migrated_database("cashier"),
            role="all",
            port=ports["cashier"],
            public_base_url=urls["cashier"],
            gateway_url=urls["a"],
            routing_url=urls["routing"],
            poll_initial_seconds=0.2,
            poll_backoff_max_seconds=0.5,
            poll_interval_seconds=0.1,
            webhook_interval_seconds=0.1,
            webhook_allow_http=True,
            webhook_allow_loopback=True,
        ),
    }
    async with contextlib.AsyncExitStack() as stack:
        for name, app_settings in apps.items():
            await stack.enter_async_context(serve_app(create_app(name, app_settings), port=ports[name], name=name))
        await stack.enter_async_context(serve_app(create_app("gateway", gateway), port=ports["a"], name="gateway A"))
        # B answers onboardings at once and leaves the steps to A's worker (onboarding_inline_seconds = 0).
        replica_b = gateway.model_copy(update={"role": "api", "port": ports["b"], "onboarding_inline_seconds": 0})
        await stack.enter_async_context(serve_app(create_app("gateway", replica_b), port=ports["b"], name="gateway B"))
        built = Env(urls["a"], urls["b"], keys["admin_key"], identity, alipay, receiver, gateway_db)
        admin = built.admin()
        await admin.request(
            "POST",
            "/v1/channel-routes",
            json={
                "route_id": ROUTE_ID,
                "method": "alipay",
                "kind": "direct",
                "provider": "alipay",
                "connector": "alipay",
                "config_ref": "test/alipay",
                "scenes": ["native_qr"],
            },
        )
        await admin.request(
            "POST",
            "/v1/channel-routes",
            json={
                "route_id": WECHAT_ROUTE_ID,
                "method": "wechat",
                "kind": "service_provider",
                "provider": "wechatpay",
                "connector": "wechatpay",
                "config_ref": "test/wechatpay-sp",
                "scenes": ["native_qr"],
            },
        )
        for route_id in (ROUTE_ID, WECHAT_ROUTE_ID):
            rate = {"route_id": route_id, "rate_bps": 55, "valid_from": "2026-01-01T00:00:00+08:00"}
            await admin.request("POST", "/v1/fee-rates", json=rate)
        try:
            yield built
        finally:
            for client in built.clients:
                await client.aclose()


async def onboard(env: Env, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = await env.admin().request(
        "POST", "/v1/platform/merchant-onboardings", json=body, idempotency_key=key or str(uuid.uuid4())
    )
    return answer


async def held_for_review(env: Env) -> dict[str, Any]:
    """An onboarding whose KYC check the identity provider holds for review (its licence number is on hold)."""
    body = env.body()
    await env.identity_rules(hold_documents=[body["business_licence_number"]])
    try:
        return await onboard(env, body)
    finally:
        await env.identity_rules()


async def approve_check(env: Env, check_id: str) -> None:
    """The identity provider's reviewer approves a held check."""
    async with httpx.AsyncClient() as http:
        decided = await http.post(f"{env.identity.base_url}/control/merchant-checks/{check_id}/approve", json={})
    assert decided.status_code == 200, decided.text


async def until_active(env: Env, onboarding_id: str, what: str) -> dict[str, Any]:
    """The onboarding as replica B reads it, once something (the worker) has made it active."""
    admin = env.admin(env.b)

    async def active() -> Any:
        read = await admin.request("GET", f"/v1/platform/merchant-onboardings/{onboarding_id}")
        return read if read["status"] == "active" else None

    found: dict[str, Any] = await eventually(active, what)
    return found


async def test_one_call_onboards_a_merchant_that_takes_a_payment_at_once_and_whose_webhooks_verify(env: Env) -> None:
    body, key = env.body(), str(uuid.uuid4())
    done = await onboard(env, body, key)
    assert done["status"] == "active", done["steps"]
    assert {name: step["status"] for name, step in done["steps"].items()} == dict.fromkeys(
        ("identity", "kyc", "ledger", "cashier", "routing", "settlement"), "active"
    )
    merchant_id, api_key, secret = done["merchant_id"], done["api_key"], done["webhook_secret"]

    # The same call again is the same merchant with the same credentials; another body with that key is a 409.
    again = await onboard(env, body, key)
    assert (again["onboarding_id"], again["merchant_id"], again["api_key"], again["webhook_secret"]) == (
        done["onboarding_id"],
        merchant_id,
        api_key,
        secret,
    )
    with pytest.raises(ConflictError) as reused:
        await onboard(env, {**body, "display_name": "Another"}, key)
    assert reused.value.code == "idempotency_key_reused"

    # It takes a payment at once, through the other replica: routing finds its contract, the cashier its channel.
    juhe = env.merchant(env.b, api_key)
    payment = await juhe.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
    assert payment["attempts"][0]["channel"] == "alipay"
    sandbox, app = env.alipay
    async with httpx.AsyncClient() as http:
        approved = await http.post(
            f"{sandbox.base_url}/control/trades/{payment['attempts'][0]['out_trade_no']}/approve",
            params={"app_id": app["app_id"]},
        )
    assert approved.status_code == 200, approved.text

    # Its webhook verifies with the secret the onboarding returned (nothing copied it anywhere by hand).
    async def delivered() -> Any:
        return [h for h in env.receiver.delivered() if payment["id"].encode() in h.body]

    hooks = await eventually(delivered, "the payment.succeeded webhook")
    event = construct_event(hooks[0].body, hooks[0].headers[SIGNATURE_HEADER], secret)
    assert event["type"] == "payment.succeeded"
    read = await env.admin(env.b).request("GET", f"/v1/platform/merchant-onboardings/{done['onboarding_id']}")
    assert read["status"] == "active" and read.get("api_key") is None  # secrets only answer the creating call


async def test_a_rejected_kyc_leaves_nothing_active_and_a_retry_after_the_fix_completes(env: Env) -> None:
    body = env.body()
    account = body["settlement_account"]["account_number"]
    await env.identity_rules(bank_account_names={account: "某某贸易有限公司"})
    try:
        rejected = await onboard(env, body)
    finally:
        await env.identity_rules()
    assert rejected["status"] == "rejected"
    kyc = rejected["steps"]["kyc"]
    assert kyc["status"] == "rejected" and [r["code"] for r in kyc["reasons"]] == ["bank_account_name_mismatch"]
    assert all(rejected["steps"][s]["status"] == "pending" for s in ("ledger", "cashier", "routing", "settlement"))

    # Nothing half-active: the key is refused, and no service has heard of the merchant.
    merchant_id = rejected["merchant_id"]
    with pytest.raises(AuthenticationError):
        await env.merchant(env.a, rejected["api_key"]).request("POST", "/v1/payments", json=PAYMENT)
    admin = env.admin()
    for path in (
        f"/v1/admin/merchants/{merchant_id}",
        f"/v1/contracts/{merchant_id}/{ROUTE_ID}",
        f"/v1/wallet/holders/{merchant_id}",
    ):
        with pytest.raises(NotFoundError):
            await admin.request("GET", path)

    # The review queue lists it (the one list shape: data, has_more, next_cursor; strict query).
    queue = await admin.request("GET", "/v1/platform/merchant-onboardings", params={"status": "rejected"})
    assert rejected["onboarding_id"] in [o["onboarding_id"] for o in queue["data"]] and "has_more" in queue
    assert all(o["status"] == "rejected" and o.get("api_key") is None for o in queue["data"])
    for params in ({"cursor": "garbage"}, {"stauts": "rejected"}, {"status": "done"}):
        with pytest.raises(InvalidRequestError) as refused:
            await admin.request("GET", "/v1/platform/merchant-onboardings", params=params)
        assert refused.value.status == 422

    # The bank record is corrected: a retry runs the check again and the rest of the steps.
    retried = await admin.request("POST", f"/v1/platform/merchant-onboardings/{rejected['onboarding_id']}/retry")
    assert retried["status"] == "active", retried["steps"]
    assert retried["steps"]["kyc"]["previous_reasons"][0]["code"] == "bank_account_name_mismatch"
    # The key the replica refused while the merchant was inactive works there at once (no cached refusal).
    juhe = env.merchant(env.a, rejected["api_key"])
    payment = await juhe.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
    assert payment["merchant_id"] == merchant_id


async def test_an_individual_without_a_licence_settling_to_their_own_account_is_onboarded(env: Env) -> None:
    body = env.body(
        entity_type="individual",
        legal_name="张三",
        business_licence_number=None,
        settlement_account={"account_name": "张三", "account_number": "6222021234567891", "bank_name": "ICBC Hangzhou"},
    )
    del body["business_licence_number"]
    done = await onboard(env, body)
    assert done["status"] == "active", done["steps"]
    assert "note" in done["steps"]["ledger"]["detail"]  # no licence: accounts open on first use


async def test_a_live_key_cannot_be_onboarded_onto_a_sandbox_channel(env: Env) -> None:
    """Test and live never mix: the cashier refuses a live configuration pointing at a sandbox, the step is rejected
    with its reason and the merchant stays off (its earlier steps done, nothing active)."""
    rejected = await onboard(env, env.body(key_mode="live"))
    assert rejected["status"] == "rejected"
    cashier = rejected["steps"]["cashier"]
    assert cashier["status"] == "rejected" and cashier["reasons"][0]["code"] == "channel_mode_mismatch"
    assert rejected["steps"]["ledger"]["status"] == "verified" and rejected["steps"]["routing"]["status"] == "pending"
    with pytest.raises(AuthenticationError):
        await env.merchant(env.b, rejected["api_key"]).request("POST", "/v1/payments", json=PAYMENT)


async def test_a_check_held_for_review_is_finished_by_the_worker_once_approved(env: Env) -> None:
    waiting = await held_for_review(env)
    assert waiting["status"] == "processing"
    assert waiting["steps"]["kyc"]["status"] == "pending"
    assert waiting["steps"]["kyc"]["last_error"]["code"] == "kyc_in_review"
    await approve_check(env, f"{waiting['onboarding_id']}.0")
    await until_active(env, waiting["onboarding_id"], "the worker to finish the onboarding")


async def test_the_worker_finishes_an_onboarding_its_request_did_not_drive(env: Env) -> None:
    """Replica B answers before any step ran (as a request cut short would); A's worker, not a request, ends it."""
    answered = await env.admin(env.b).request(
        "POST", "/v1/platform/merchant-onboardings", json=env.body(), idempotency_key=str(uuid.uuid4())
    )
    assert answered["status"] == "processing" and answered["steps"]["kyc"]["attempts"] == 0
    await until_active(env, answered["onboarding_id"], "the worker to drive the onboarding to the end")
    juhe = env.merchant(env.b, answered["api_key"])
    taken = await juhe.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
    assert taken["attempts"][0]["channel"] == "alipay"


async def test_an_onboarding_whose_driver_died_is_taken_over_when_its_lease_runs_out(env: Env) -> None:
    """A replica took the lease and died mid-way (here: while the KYC check waited for review): nobody else touches
    the onboarding until the lease runs out, then the worker finishes it."""
    onboarding_id = (await held_for_review(env))["onboarding_id"]
    engine = create_async_engine(env.gateway_db)
    try:
        async with engine.begin() as conn:  # the dead replica's lease, a second from now
            await conn.execute(
                text(
                    "UPDATE merchant_onboardings SET lease_until = clock_timestamp() + interval '1 s' "
                    "WHERE onboarding_id = :id"
                ),
                {"id": onboarding_id},
            )
    finally:
        await engine.dispose()
    await approve_check(env, f"{onboarding_id}.0")
    await until_active(env, onboarding_id, "the worker to take the onboarding over after the lease")


async def test_suspension_refuses_on_both_replicas_at_once_and_resumption_restores(env: Env) -> None:
    done = await onboard(env, env.body())
    merchant_id = done["merchant_id"]
    on_a, on_b = env.merchant(env.a, done["api_key"]), env.merchant(env.b, done["api_key"])
    paid = await on_a.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
    await on_b.request("GET", f"/v1/payments/{paid['id']}")  # both replicas have the key cached now
    session = await on_b.request(
        "POST",
        "/v1/checkout/sessions",
        json={
            "merchant_order_no": uuid.uuid4().hex,
            "amount_minor": 800,
            "currency": "CNY",
            "description": "Tea for two",
            "return_url": "https://tea.example/done",
            "cancel_url": "https://tea.example/cart",
        },
    )
    token = urlsplit(session["url"]).path.rsplit("/", 1)[1]

    async def pay_on_page() -> httpx.Response:  # the hosted checkout page: no merchant key, the page token
        async with httpx.AsyncClient(base_url=env.a) as http:
            return await http.post(
                f"/v1/checkout/pages/{token}/payments",
                json={"method": "alipay", "scene": "native_qr", "request_id": uuid.uuid4().hex},
            )

    suspended = await env.admin(env.a).request(
        "POST", f"/v1/platform/merchants/{merchant_id}/suspension", json={"reason": "chargeback ratio above 1%"}
    )
    assert suspended["suspended"] is True
    for client in (on_a, on_b):
        with pytest.raises(PermissionDeniedError) as refused:
            await client.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
        assert refused.value.code == "merchant_suspended" and refused.value.status == 403
        assert (await client.request("GET", f"/v1/payments/{paid['id']}"))["id"] == paid["id"]  # reads go on
        closed = await client.request("POST", f"/v1/payments/{paid['id']}/close") if client is on_a else None
        assert closed is None or closed["status"] in ("closed", "processing")
    refused_page = await pay_on_page()
    assert refused_page.status_code == 403 and refused_page.json()["code"] == "merchant_suspended", refused_page.text
    with pytest.raises(ConflictError) as twice:
        await env.admin(env.b).request(
            "POST", f"/v1/platform/merchants/{merchant_id}/suspension", json={"reason": "again"}
        )
    assert twice.value.code == "merchant_status_conflict"

    await env.admin(env.b).request(
        "POST", f"/v1/platform/merchants/{merchant_id}/resumption", json={"reason": "ratio back under 0.5%"}
    )
    for client in (on_a, on_b):
        taken = await client.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
        assert taken["status"] in ("processing", "created")
    resumed_page = await pay_on_page()
    assert resumed_page.status_code == 200, resumed_page.text
    audit = await env.admin().request("GET", f"/v1/platform/merchants/{merchant_id}/suspension")
    assert [(c["action"], c["reason"]) for c in audit["changes"]] == [
        ("resumed", "ratio back under 0.5%"),
        ("suspended", "chargeback ratio above 1%"),
    ]


async def test_operator_console_sessions_act_within_their_role(env: Env) -> None:
    """The operator console calls these routes with a member's session: risk reviews (reads, retries) but may not
    suspend; operations may, and the audit names the member."""
    done = await onboard(env, env.body())
    async with httpx.AsyncClient(base_url=env.a) as raw:
        risk, operations = (
            await _operator(env.admin_key, raw, "risk"),
            await _operator(env.admin_key, raw, "operations"),
        )
        listed = await raw.get("/v1/platform/merchant-onboardings", params={"status": "active"}, headers=risk)
        assert listed.status_code == 200 and done["onboarding_id"] in [
            o["onboarding_id"] for o in listed.json()["data"]
        ]
        path = f"/v1/platform/merchants/{done['merchant_id']}/suspension"
        refused = await raw.post(path, json={"reason": "review"}, headers=risk)
        assert (refused.status_code, refused.json()["code"]) == (403, "console_permission_denied")
        created = await raw.post("/v1/platform/merchant-onboardings", json=env.body(), headers=operations)
        assert (created.status_code, created.json()["code"]) == (403, "route_forbidden")  # the admin key's only
        suspended = await raw.post(path, json={"reason": "KYC document expired"}, headers=operations)
        assert suspended.status_code == 200 and suspended.json()["suspended"] is True
        audit = (await raw.get(path, headers=risk)).json()
        assert audit["changes"][0]["actor"].startswith("staff:")


async def test_partner_mode_onboards_with_the_platform_template_and_pays_as_a_sub_merchant(
    env: Env, wechatpay_provider: tuple[str, dict[str, Any]]
) -> None:
    """The platform stores its WeChat Pay service-provider configuration once (sealed, never echoed, idempotent);
    a partner-mode onboarding then names only the merchant's sub_mchid and takes a payment at the sandbox as
    that provider's sub-merchant. Without a template for the mode, the cashier step is rejected and nothing is on."""
    base_url, sp = wechatpay_provider
    template = {
        "base_url": base_url,
        "sp_mchid": SP_MCHID,
        "sp_appid": SP_APPID,
        "merchant_private_key_pem": sp["merchant_private_key_pem"],
        "merchant_cert_serial": sp["merchant_cert_serial"],
        "apiv3_key": sp["apiv3_key"],
        "platform_public_key_pem": sp["platform_public_key_pem"],
        "platform_public_key_id": sp["platform_public_key_id"],
    }
    admin, path = env.admin(), "/v1/platform/partner-templates/wechatpay/test"
    stored = await admin.request("PUT", path, json={"config": template})
    again = await admin.request("PUT", path, json={"config": template})
    assert (stored["version"], again["version"]) == (1, 1) and stored["config"]["sp_mchid"] == SP_MCHID
    assert stored["secret_fields"] == ["apiv3_key", "merchant_private_key_pem"]
    listed = await env.admin(env.b).request("GET", "/v1/platform/partner-templates")
    for shown in (str(stored), str(listed), str(await admin.request("GET", path))):  # secrets never echoed
        assert sp["apiv3_key"] not in shown and "PRIVATE KEY" not in shown
    assert [(t["channel"], t["mode"]) for t in listed["data"]] == [("wechatpay", "test")]
    with pytest.raises(InvalidRequestError):  # a merchant's own id is not the platform's template
        await admin.request("PUT", path, json={"config": {**template, "sub_mchid": "1900000111"}})

    def partner_body(sub_mchid: str, mode: str = "test") -> dict[str, Any]:
        opening = {
            "channel": "wechatpay",
            "route_id": WECHAT_ROUTE_ID,
            "sub_merchant_id": sub_mchid,
            "partner": {"sub_mchid": sub_mchid},
            "mode": mode,
        }
        return env.body(channels=[opening])

    done = await onboard(env, partner_body("1900000111"))
    assert done["status"] == "active", done["steps"]
    juhe = env.merchant(env.b, done["api_key"])
    payment = await juhe.request("POST", "/v1/payments", json={**PAYMENT, "merchant_order_no": uuid.uuid4().hex})
    assert payment["attempts"][0]["channel"] == "wechatpay"
    async with httpx.AsyncClient() as http:  # the order is the provider's, for this sub-merchant
        approved = await http.post(
            f"{base_url}/control/orders/{payment['attempts'][0]['out_trade_no']}/approve",
            params={"mchid": f"{SP_MCHID}/1900000111"},
        )
    assert approved.status_code == 200, approved.text

    async def succeeded() -> Any:
        read = await juhe.request("GET", f"/v1/payments/{payment['id']}")
        return read if read["status"] == "succeeded" else None

    await eventually(succeeded, "the partner-mode payment succeeded")

    rejected = await onboard(env, partner_body("1900000112", mode="live"))  # no live template stored
    cashier = rejected["steps"]["cashier"]
    assert rejected["status"] == "rejected" and cashier["reasons"][0]["code"] == "partner_template_missing"
    with pytest.raises(AuthenticationError):
        await env.merchant(env.a, rejected["api_key"]).request("POST", "/v1/payments", json=PAYMENT)
