"""Seed the demo platform idempotently: the same keys are printed on every run.

1. The gateway creates the demo platform (its admin key) and user (`gateway/flows/seed.py`, `merchant=False`).
2. The demo merchant and the platform's own collecting merchant for wallet top-ups (`mch_wallet`) are
   registered with the WeChat Pay, Alipay, UnionPay and e-CNY bank sandboxes, as a merchant would on the
   channels' own platforms; the generated credentials are kept in `.juhe/demo-channels.json` (the
   sandboxes keep theirs in `.juhe/sandboxes/`), so later runs reuse them. `mch_wallet`'s Alipay app is in
   certificate mode (app certificate + Alipay root certificate SN): Alipay opens its fund APIs (transfers
   to an Alipay account, for wallet withdrawals) to certificate-mode apps only; a saved public-key-mode
   app of an earlier run is switched over once.
3. Routing gets one route per channel (`DEMO_ROUTES`) with a fee rate: the platform's own set-up, made once.
4. `mch_demo` is onboarded the documented way (docs/onboarding.md): **one** `POST
   /v1/platform/merchant-onboardings` through the gateway with the platform's admin key — KYC at the identity
   sandbox, its ledger holder, its channels in the cashier, its routing profile and contracts, its settlement
   cycle — and the seed waits until the onboarding is `active`. The Idempotency-Key is derived from the request,
   so a later run with the same channels replays the same onboarding (same key, same webhook secret) and writes
   them to `demo-keys.json` again. A data dir of an earlier version (the merchant made before onboarding
   existed, or its channels changed since) keeps its merchant: its keys are checked and its channels and
   contracts set directly, as before.
5. `mch_wallet` is the platform's own account at the channels, not a merchant of the platform (no API key, no
   KYC of the platform by itself): its channels and contracts are set directly in the cashier and routing.
6. Settlement's client at the bank sandbox: the launcher provisions the credentials before any process
   starts (`.juhe/demo-bank.json`, given to settlement as settings) and registers them with the bank once
   it is up, so payouts and withdrawals are paid out of the box.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from cryptography.hazmat.primitives import serialization

from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.settings import DEMO_INTERNAL_TOKEN_SECRET

if TYPE_CHECKING:
    from deploy.launcher.main import Platform

DEMO_MERCHANT_ID = "mch_demo"
# The demo owner of the merchant console (the launcher is for development only; printed in its summary).
DEMO_CONSOLE_EMAIL = "owner@demo.juhe.dev"
DEMO_CONSOLE_PASSWORD = "juhe-demo-console-owner"
# The platform's own merchant at the channels: it collects wallet top-ups (docs/ledger.md §3.7).
WALLET_TOPUP_MERCHANT_ID = "mch_wallet"
# (merchant, WeChat Pay mchid): each merchant has its own account at the channel.
DEMO_WECHAT_MCHIDS = {DEMO_MERCHANT_ID: "1900000109", WALLET_TOPUP_MERCHANT_ID: "1900000110"}
# UnionPay merId (15 characters) and the e-CNY bank's merchant number of each merchant.
DEMO_UNIONPAY_MER_IDS = {DEMO_MERCHANT_ID: "777290058110048", WALLET_TOPUP_MERCHANT_ID: "777290058110049"}
DEMO_ECNY_MERCHANT_IDS = {DEMO_MERCHANT_ID: "EC000000000101", WALLET_TOPUP_MERCHANT_ID: "EC000000000102"}
UNIONPAY_CONFIG_FIELDS = (
    "mer_id",
    "sign_pfx_base64",
    "sign_pfx_password",
    "root_cert_pem",
    "middle_cert_pem",
    "validate_cn_name",
)
ECNY_CONFIG_FIELDS = (
    "merchant_id",
    "merchant_private_key_hex",
    "merchant_public_key_hex",
    "bank_public_key_hex",
    "sm4_key_hex",
)
# Merchants whose Alipay app is in certificate mode (fund APIs: transfers for wallet withdrawals).
ALIPAY_CERT_MODE_MERCHANTS = frozenset({WALLET_TOPUP_MERCHANT_ID})
# The cashier's channel priority (1 first) when a payment names none: the card and e-CNY channels after the
# wallets, so a payment for a scene several channels take keeps its earlier first choice and fail-over.
DEMO_CHANNEL_ORDER = ("alipay", "wechatpay", "unionpay", "ecny")
BANK_CLIENT_ID = "juhe_settlement"


@dataclass(frozen=True, slots=True)
class DemoRoute:
    """One routing route of the demo: invented demo fee rates, not quotes."""

    route_id: str
    method: str
    connector: str
    scenes: Sequence[str]
    rate_bps: int
    kind: str = "direct"
    provider: str | None = None  # who acquires; None: the connector's own institution


DEMO_ROUTES = (
    # `barcode` is routing's name for the 付款码 scene (payment_code): the code picks the channel, routing the fee.
    DemoRoute(
        "ali_direct", "alipay", "alipay", ["native_qr", "page", "h5", "app", "jsapi", "mini_program", "barcode"], 55
    ),
    DemoRoute("wx_direct", "wechat", "wechatpay", ["native_qr", "jsapi", "mini_program", "app", "h5", "barcode"], 60),
    # UnionPay online payment (全渠道): web, mobile web and app consumes on the platform's own merId.
    DemoRoute("up_direct", "unionpay", "unionpay", ["page", "h5", "app"], 60),
    # e-CNY through the operating bank the platform signed with (an acquirer route): wallet-app QR and H5.
    DemoRoute("ecny_bank", "ecny", "ecny", ["native_qr", "h5"], 0, kind="acquirer", provider="ecny_bank"),
)
ALREADY_THERE = 409
DEMO_WECHAT_APPID = "wxd678efh567hg6787"
SEED_TIMEOUT_SECONDS = 10.0
# The onboarding call drives its steps inline for up to 20 s (onboarding_inline_seconds); then the gateway's worker.
ONBOARDING_TIMEOUT_SECONDS = 60.0
ONBOARDING_ACTIVE_WITHIN_SECONDS = 120.0
ONBOARDING_POLL_SECONDS = 0.5
MERCHANT_EXISTS = "merchant_exists"
# The demo merchant's onboarding data: made up, but well formed and passing the identity sandbox's checks (the
# licence number's and the ID number's check characters; the settlement account in the company's own name).
DEMO_ONBOARDING: dict[str, Any] = {
    "merchant_id": DEMO_MERCHANT_ID,
    "legal_name": "聚合演示停车场有限公司",
    "display_name": "Demo merchant",
    "entity_type": "company",
    "industry_code": "7523",  # parking lots and garages
    "business_licence_number": "913301087040123450",
    "legal_representative": {"name": "张三", "id_number": "11010519491231002X"},
    "contact": {"name": "李四", "email": "ops@demo.juhe.dev", "phone": "+8613800138000"},
    "settlement_account": {
        "account_name": "聚合演示停车场有限公司",
        "account_number": "6222021234567890",
        "bank_name": "ICBC Hangzhou",
    },
    "key_mode": "test",
}
# The field of each channel's config that is the merchant's own id at the channel (the routing contract's).
SUB_MERCHANT_ID_FIELDS = {"wechatpay": "mchid", "alipay": "seller_id", "unionpay": "mer_id", "ecny": "merchant_id"}


async def seed(platform: Platform, db_urls: dict[str, str]) -> dict[str, str]:
    try:
        gateway_seed = importlib.import_module("gateway.flows.seed")
    except ModuleNotFoundError:
        platform.say("gateway seed not available yet; skipping demo data")
        return {}
    keys_path = platform.data_dir / "demo-keys.json"
    result = await gateway_seed.seed_demo_async(db_urls["gateway"], keys_path, merchant=False)
    demo = {str(k): str(v) for k, v in dict(result).items() if k != "created"}
    urls = platform.urls()
    try:
        channels_path = platform.data_dir / "demo-channels.json"
        saved = _load(channels_path)
        by_merchant: dict[str, dict[str, dict[str, Any]]] = {}
        for merchant_id in DEMO_WECHAT_MCHIDS:
            by_merchant[merchant_id] = await _demo_channels(merchant_id, saved.get(merchant_id, {}), urls)
        _save(channels_path, by_merchant)
        channels = by_merchant[DEMO_MERCHANT_ID]
        await _configure_routing(urls["routing"], by_merchant, contracts_for=(WALLET_TOPUP_MERCHANT_ID,))
        onboarded = await _onboard_demo_merchant(urls["gateway"], demo["admin_key"], channels)
        if onboarded is None:  # made before onboarding existed (or its channels changed): kept, set up directly
            result = await gateway_seed.seed_demo_async(db_urls["gateway"], keys_path, merchant=True)
            demo = {str(k): str(v) for k, v in dict(result).items() if k != "created"}
            await _configure_cashier(urls["cashier"], DEMO_MERCHANT_ID, demo["webhook_secret"], channels)
            await _configure_routing(urls["routing"], by_merchant, contracts_for=(DEMO_MERCHANT_ID,))
        else:
            demo.update(onboarded)
            gateway_seed.save_keys(keys_path, {k: v for k, v in dict(result).items() if k != "created"} | onboarded)
        await _configure_cashier(urls["cashier"], WALLET_TOPUP_MERCHANT_ID, None, by_merchant[WALLET_TOPUP_MERCHANT_ID])
        await _open_demo_wallet(urls["ledger"], demo.get("user_id", "usr_demo"))
        if "bank" in urls:
            await _register_bank_client(urls["bank"], platform.demo_settings.get("settlement", {}))
        how = "onboarded in one call" if onboarded is not None else "configured in the cashier"
        demo["channels"] = ", ".join(sorted(channels)) + f" (sandboxes, {how})"
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        platform.say(f"demo channels not configured: {exc!r}")
    # The demo merchant's console owner (docs/consoles.md): signs in at the gateway's /console/sign-in.
    owner = await importlib.import_module("gateway.flows.staff").seed_demo_owner(
        db_urls["gateway"], merchant_id=DEMO_MERCHANT_ID, email=DEMO_CONSOLE_EMAIL, password=DEMO_CONSOLE_PASSWORD
    )
    if owner and "gateway" in urls:
        sign_in = f"{urls['gateway']}/console/sign-in"
        demo["console_sign_in"] = f"{sign_in}  {owner['console_email']} / {owner['console_password']}"
    return demo


def demo_onboarding_request(channels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The demo merchant's one onboarding request: its details and every registered channel, in the demo's
    priority order, each contracted on the channel's demo route with the merchant's own id at the channel."""
    routes = {route.connector: route.route_id for route in DEMO_ROUTES}
    openings = [
        {
            "channel": channel,
            "route_id": routes[channel],
            "priority": priority,
            "config": config,
            "sub_merchant_id": str(config.get(SUB_MERCHANT_ID_FIELDS[channel]) or f"{DEMO_MERCHANT_ID}_{channel}"),
        }
        for priority, (channel, config) in enumerate(_by_priority(channels), start=1)
        if channel in routes
    ]
    return {**DEMO_ONBOARDING, "channels": openings}


async def _onboard_demo_merchant(
    gateway_url: str, admin_key: str, channels: dict[str, dict[str, Any]]
) -> dict[str, str] | None:
    """Onboard `mch_demo` with the one call and wait until it is active; its credentials, or None when the merchant
    exists from an earlier version's seed (409 `merchant_exists`). A rejected onboarding is a ValueError."""
    body = demo_onboarding_request(channels)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    headers = {
        "Authorization": f"Bearer {admin_key}",
        "Idempotency-Key": f"demo-onboarding-{hashlib.sha256(canonical).hexdigest()[:32]}",
    }
    async with httpx.AsyncClient(base_url=gateway_url, timeout=ONBOARDING_TIMEOUT_SECONDS) as client:
        response = await client.post("/v1/platform/merchant-onboardings", json=body, headers=headers)
        if response.status_code == ALREADY_THERE and response.json().get("code") == MERCHANT_EXISTS:
            return None
        response.raise_for_status()
        created = response.json()
        onboarding = created
        deadline = time.monotonic() + ONBOARDING_ACTIVE_WITHIN_SECONDS
        while onboarding["status"] == "processing" and time.monotonic() < deadline:
            await asyncio.sleep(ONBOARDING_POLL_SECONDS)  # the gateway's worker finishes what the call left
            read = await client.get(
                f"/v1/platform/merchant-onboardings/{created['onboarding_id']}",
                headers={"Authorization": f"Bearer {admin_key}"},
            )
            read.raise_for_status()
            onboarding = read.json()
    if onboarding["status"] != "active":
        steps = {
            name: (step["status"], step.get("reasons") or step.get("last_error"))
            for name, step in onboarding["steps"].items()
            if step["status"] != "verified"
        }
        raise ValueError(f"demo onboarding {created['onboarding_id']} is {onboarding['status']}: {steps}")
    return {
        "merchant_id": created["merchant_id"],
        "key_id": created["api_key"]["key_id"],
        "secret": created["api_key"]["secret"],
        "webhook_secret": created["webhook_secret"],
        "onboarding_id": created["onboarding_id"],
    }


def demo_service_settings(data_dir: Path) -> dict[str, dict[str, object]]:
    """Settings the demo needs before the processes start: settlement's bank credentials (provisioned
    here, kept in `demo-bank.json`, registered with the bank sandbox by `seed`), the ledger's top-up
    merchant and the cashier's dev flags for local webhook receivers."""
    path = data_dir / "demo-bank.json"
    bank = json.loads(path.read_text()) if path.exists() else {}
    if not bank.get("secret"):
        bank = {"client_id": BANK_CLIENT_ID, "secret": secrets.token_hex(32)}
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(bank))
        path.chmod(0o600)
    return {
        "settlement": {"bank_client_id": bank["client_id"], "bank_secret": bank["secret"]},
        "ledger": {"wallet_topup_merchant_id": WALLET_TOPUP_MERCHANT_ID},
        # Marketing's top-up promotions give a bonus on this merchant's wallet top-ups only.
        "marketing": {"wallet_topup_merchant_id": WALLET_TOPUP_MERCHANT_ID},
        # The launcher is the dev/test platform: a merchant's webhook receiver on this machine
        # (http://127.0.0.1:…) must be reachable. Production leaves both flags off (https, public only).
        "cashier": {"webhook_allow_http": True, "webhook_allow_loopback": True},
    }


async def _register_bank_client(bank_url: str, settlement: dict[str, object]) -> None:
    body = {"client_id": settlement["bank_client_id"], "secret": settlement["bank_secret"]}
    async with httpx.AsyncClient(timeout=SEED_TIMEOUT_SECONDS) as client:
        response = await client.post(f"{bank_url}/control/clients", json=body)
        response.raise_for_status()
        if response.json().get("secret") != body["secret"]:
            raise ValueError("the bank sandbox kept another secret for settlement's client: run `make reset`")


def _load(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Channel configs per merchant; a file of an earlier version (channels of mch_demo only) is read as such."""
    saved = json.loads(path.read_text()) if path.exists() else {}
    return {DEMO_MERCHANT_ID: saved} if "wechatpay" in saved or "alipay" in saved else saved


def _save(path: Path, channels: dict[str, dict[str, dict[str, Any]]]) -> None:
    path.write_text(json.dumps(channels, indent=2))
    path.chmod(0o600)  # holds the demo merchants' private keys


async def _demo_channels(
    merchant_id: str, saved: dict[str, dict[str, Any]], urls: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Register one merchant with each running channel sandbox once; reuse the saved configs."""
    mchid = DEMO_WECHAT_MCHIDS[merchant_id]
    async with httpx.AsyncClient(timeout=SEED_TIMEOUT_SECONDS) as client:
        if "wechatpay" in urls and "wechatpay" not in saved:
            r = await client.post(
                f"{urls['wechatpay']}/control/merchants",
                json={"mchid": mchid, "appid": DEMO_WECHAT_APPID, "generate_key_pair": True},
            )
            r.raise_for_status()
            reg = r.json()
            saved["wechatpay"] = {
                "base_url": urls["wechatpay"],
                "mchid": mchid,
                "appid": DEMO_WECHAT_APPID,
                "merchant_private_key_pem": reg["merchant_private_key_pem"],
                "merchant_cert_serial": reg["merchant_cert_serial"],
                "platform_public_key_pem": reg["platform_public_key_pem"],
                "platform_public_key_id": reg["platform_public_key_id"],
                "apiv3_key": reg["apiv3_key"],
                # the appid's AppSecret: the cashier redeems an in-app payer's authorisation code with it (JSAPI)
                "app_secret": reg["app_secrets"][DEMO_WECHAT_APPID],
            }
        if "alipay" in urls and "alipay" not in saved:
            r = await client.post(f"{urls['alipay']}/control/apps", json={})
            r.raise_for_status()
            reg = r.json()
            saved["alipay"] = {
                "gateway_url": f"{urls['alipay']}/gateway.do",
                "app_id": reg["app_id"],
                "app_private_key_pem": reg["app_private_key_pem"],
                "alipay_public_key_pem": reg["alipay_public_key_pem"],
                "seller_id": reg.get("seller_id"),
            }
        if "alipay" in saved and merchant_id in ALIPAY_CERT_MODE_MERCHANTS and not saved["alipay"].get("app_cert_pem"):
            saved["alipay"] = await _alipay_certificate_mode(client, urls["alipay"], saved["alipay"])
        # The sandboxes' merchant registration answers the connector's config fields (docs/protocols §8).
        for channel, body, fields in (
            ("unionpay", {"mer_id": DEMO_UNIONPAY_MER_IDS[merchant_id]}, UNIONPAY_CONFIG_FIELDS),
            ("ecny", {"merchant_id": DEMO_ECNY_MERCHANT_IDS[merchant_id]}, ECNY_CONFIG_FIELDS),
        ):
            if channel in urls and channel not in saved:
                r = await client.post(f"{urls[channel]}/control/merchants", json=body)
                r.raise_for_status()
                saved[channel] = {"base_url": urls[channel], **{k: r.json()[k] for k in fields}}
    return saved


async def _alipay_certificate_mode(
    client: httpx.AsyncClient, alipay_url: str, config: dict[str, Any]
) -> dict[str, Any]:
    """Switch an app to certificate mode, as a merchant does on Alipay's open platform: upload the app's
    public key, download the app certificate, Alipay's certificate and Alipay's root certificate. The
    connector then sends `app_cert_sn` + `alipay_root_cert_sn` and takes Alipay's key from its certificate."""
    private_key = serialization.load_pem_private_key(config["app_private_key_pem"].encode(), password=None)
    public_pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    body = {
        "app_id": config["app_id"],
        "app_public_key_pem": public_pem,
        "cert_mode": True,
        "seller_id": config.get("seller_id"),
    }
    r = await client.post(f"{alipay_url}/control/apps", json=body)
    r.raise_for_status()
    reg = r.json()
    return {
        **config,
        "alipay_public_key_pem": reg["alipay_public_key_pem"],
        **{k: reg[k] for k in ("app_cert_pem", "alipay_cert_pem", "alipay_root_cert_pem")},
    }


async def _configure_cashier(
    cashier_url: str, merchant_id: str, webhook_secret: str | None, channels: dict[str, dict[str, Any]]
) -> None:
    headers = _platform_headers()
    async with httpx.AsyncClient(base_url=cashier_url, timeout=SEED_TIMEOUT_SECONDS, headers=headers) as c:
        body = {"webhook_secret": webhook_secret} if webhook_secret else {}
        (await c.put(f"/v1/admin/merchants/{merchant_id}", json=body)).raise_for_status()
        for priority, (channel, config) in enumerate(_by_priority(channels), start=1):
            r = await c.put(
                f"/v1/admin/merchants/{merchant_id}/channels/{channel}",
                json={"priority": priority, "enabled": True, "config": config},
            )
            r.raise_for_status()


def _by_priority(channels: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The channels in the demo's priority order (DEMO_CHANNEL_ORDER first, then by name)."""
    order = {channel: index for index, channel in enumerate(DEMO_CHANNEL_ORDER)}
    return sorted(channels.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))


def _platform_headers() -> dict[str, str]:
    token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="launcher-seed", platform="plt_demo")
    return {IDENTITY_HEADER: token}


async def _configure_routing(
    routing_url: str, by_merchant: dict[str, dict[str, dict[str, Any]]], *, contracts_for: Sequence[str]
) -> None:
    """The demo routes any merchant's channels need, with their fee rates, and the contracts of `contracts_for`
    only (an onboarded merchant's contracts are its onboarding's)."""
    valid_from = "2026-01-01T00:00:00+08:00"
    async with httpx.AsyncClient(base_url=routing_url, timeout=SEED_TIMEOUT_SECONDS, headers=_platform_headers()) as c:
        for route in DEMO_ROUTES:
            if not any(route.connector in channels for channels in by_merchant.values()):
                continue
            merchants = [m for m in contracts_for if route.connector in by_merchant.get(m, {})]
            route_id = route.route_id
            calls = (
                c.post(
                    "/v1/channel-routes",
                    json={
                        "route_id": route_id,
                        "method": route.method,
                        "kind": route.kind,
                        "provider": route.provider or route.connector,
                        "connector": route.connector,
                        "config_ref": f"demo/{route.connector}",
                        "scenes": list(route.scenes),
                    },
                ),
                c.post(
                    "/v1/fee-rates", json={"route_id": route_id, "rate_bps": route.rate_bps, "valid_from": valid_from}
                ),
                *(
                    c.put(f"/v1/contracts/{m}/{route_id}", json={"sub_merchant_id": f"{m}_{route_id}"})
                    for m in merchants
                ),
            )
            for call in calls:
                response = await call
                if response.status_code != ALREADY_THERE:
                    response.raise_for_status()


async def _open_demo_wallet(ledger_url: str, user_id: str) -> None:
    """The demo user's big wallet (My Wallet through the gateway with the printed user token)."""
    holder = {
        "holder_id": user_id,
        "holder_type": "person",
        "name": "Demo User",
        "resident_id": "11010519491231002X",
        "phone": "13800138000",
        "bank_card": "6222021234567890128",
    }
    async with httpx.AsyncClient(base_url=ledger_url, timeout=SEED_TIMEOUT_SECONDS, headers=_platform_headers()) as c:
        response = await c.post("/v1/wallet/holders", json=holder)
        if response.status_code not in (ALREADY_THERE, 200):
            response.raise_for_status()
