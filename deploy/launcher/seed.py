"""Seed the demo platform idempotently: the same keys are printed on every run.

1. The gateway creates the demo platform, merchant `mch_demo` (API key + webhook secret) and user.
2. The demo merchant is registered with the WeChat Pay and Alipay sandboxes, as a merchant would on
   the channels' own platforms; the generated credentials are kept in `.juhe/demo-channels.json`
   (the sandboxes keep theirs in `.juhe/sandboxes/`), so later runs reuse them.
3. The cashier is given the merchant's webhook secret and both channel configs, and routing gets one
   direct route per channel with a fee rate and the merchant's contracts, so a payment can be taken
   right after `make run`. Every call is idempotent (409 "already there" is fine on later runs).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.settings import DEMO_INTERNAL_TOKEN_SECRET

if TYPE_CHECKING:
    from deploy.launcher.main import Platform

DEMO_MERCHANT_ID = "mch_demo"
# (route id, method, connector, scenes, fee in basis points): invented demo rates, not quotes.
DEMO_ROUTES = (
    ("ali_direct", "alipay", "alipay", ["native_qr", "page", "h5", "app"], 55),
    ("wx_direct", "wechat", "wechatpay", ["native_qr", "jsapi", "mini_program", "app", "h5"], 60),
)
ALREADY_THERE = 409
DEMO_WECHAT_MCHID = "1900000109"
DEMO_WECHAT_APPID = "wxd678efh567hg6787"
SEED_TIMEOUT_SECONDS = 10.0


async def seed(platform: Platform, db_urls: dict[str, str]) -> dict[str, str]:
    try:
        gateway_seed = importlib.import_module("gateway.seed")
    except ModuleNotFoundError:
        platform.say("gateway seed not available yet; skipping demo data")
        return {}
    result = await gateway_seed.seed_demo_async(db_urls["gateway"], platform.data_dir / "demo-keys.json")
    demo = {str(k): str(v) for k, v in dict(result).items() if k != "created"}
    urls = {c.spec.name: c.url for c in platform.children}
    try:
        channels_path = platform.data_dir / "demo-channels.json"
        channels = await _demo_channels(_load(channels_path), urls)
        _save(channels_path, channels)
        await _configure_cashier(urls["cashier"], demo.get("webhook_secret"), channels)
        await _configure_routing(urls["routing"], channels)
        await _open_demo_wallet(urls["ledger"], demo.get("user_id", "usr_demo"))
        demo["channels"] = ", ".join(sorted(channels)) + " (sandboxes, configured in the cashier)"
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        platform.say(f"demo channels not configured: {exc!r}")
    return demo


def _load(path: Path) -> dict[str, dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else {}


def _save(path: Path, channels: dict[str, dict[str, Any]]) -> None:
    path.write_text(json.dumps(channels, indent=2))
    path.chmod(0o600)  # holds the demo merchant's private keys


async def _demo_channels(saved: dict[str, dict[str, Any]], urls: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Register the demo merchant with each running channel sandbox once; reuse the saved configs."""
    async with httpx.AsyncClient(timeout=SEED_TIMEOUT_SECONDS) as client:
        if "wechatpay" in urls and "wechatpay" not in saved:
            r = await client.post(
                f"{urls['wechatpay']}/control/merchants",
                json={"mchid": DEMO_WECHAT_MCHID, "appid": DEMO_WECHAT_APPID, "generate_key_pair": True},
            )
            r.raise_for_status()
            reg = r.json()
            saved["wechatpay"] = {
                "base_url": urls["wechatpay"],
                "mchid": DEMO_WECHAT_MCHID,
                "appid": DEMO_WECHAT_APPID,
                "merchant_private_key_pem": reg["merchant_private_key_pem"],
                "merchant_cert_serial": reg["merchant_cert_serial"],
                "platform_public_key_pem": reg["platform_public_key_pem"],
                "platform_public_key_id": reg["platform_public_key_id"],
                "apiv3_key": reg["apiv3_key"],
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
    return saved


async def _configure_cashier(cashier_url: str, webhook_secret: str | None, channels: dict[str, dict[str, Any]]) -> None:
    headers = _platform_headers()
    async with httpx.AsyncClient(base_url=cashier_url, timeout=SEED_TIMEOUT_SECONDS, headers=headers) as c:
        body = {"webhook_secret": webhook_secret} if webhook_secret else {}
        (await c.put(f"/v1/admin/merchants/{DEMO_MERCHANT_ID}", json=body)).raise_for_status()
        for priority, (channel, config) in enumerate(sorted(channels.items()), start=1):
            r = await c.put(
                f"/v1/admin/merchants/{DEMO_MERCHANT_ID}/channels/{channel}",
                json={"priority": priority, "enabled": True, "config": config},
            )
            r.raise_for_status()


def _platform_headers() -> dict[str, str]:
    token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="launcher-seed", platform="plt_demo")
    return {IDENTITY_HEADER: token}


async def _configure_routing(routing_url: str, channels: dict[str, dict[str, Any]]) -> None:
    valid_from = "2026-01-01T00:00:00+08:00"
    async with httpx.AsyncClient(base_url=routing_url, timeout=SEED_TIMEOUT_SECONDS, headers=_platform_headers()) as c:
        for route_id, method, connector, scenes, rate_bps in DEMO_ROUTES:
            if connector not in channels:
                continue
            calls = (
                c.post(
                    "/v1/channel-routes",
                    json={
                        "route_id": route_id,
                        "method": method,
                        "kind": "direct",
                        "provider": connector,
                        "connector": connector,
                        "config_ref": f"demo/{connector}",
                        "scenes": scenes,
                    },
                ),
                c.post("/v1/fee-rates", json={"route_id": route_id, "rate_bps": rate_bps, "valid_from": valid_from}),
                c.put(f"/v1/contracts/{DEMO_MERCHANT_ID}/{route_id}", json={"sub_merchant_id": f"demo_{route_id}"}),
            )
            for call in calls:
                response = await call
                if response.status_code != ALREADY_THERE:
                    response.raise_for_status()


async def _open_demo_wallet(ledger_url: str, user_id: str) -> None:
    """The demo user's big wallet (My Wallet through the gateway with the printed user token)."""
    holder = {
        "holder_id": user_id, "holder_type": "person", "name": "Demo User",
        "resident_id": "11010519491231002X", "phone": "13800138000", "bank_card": "6222021234567890128",
    }  # fmt: skip
    async with httpx.AsyncClient(base_url=ledger_url, timeout=SEED_TIMEOUT_SECONDS, headers=_platform_headers()) as c:
        response = await c.post("/v1/wallet/holders", json=holder)
        if response.status_code not in (ALREADY_THERE, 200):
            response.raise_for_status()
