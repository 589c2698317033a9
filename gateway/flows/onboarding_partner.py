"""Partner mode's platform template: the platform's service-provider (服务商) channel configuration, stored once.

A platform that collects as a service provider has one WeChat Pay service-provider account (`sp_mchid`, `sp_appid`,
its API keys) and one Alipay ISV app (`app_id`, its keys); each merchant is only a sub-merchant of it (`sub_mchid`,
or the `app_auth_token` the merchant granted the app). So the platform stores that configuration once per channel
and mode (`PUT /v1/platform/partner-templates/{channel}/{mode}`), and a partner-mode onboarding names only the
merchant's part (`channels[].partner`); the cashier step puts the template with the merchant's part over it. Why per
mode: the test template points at the sandbox and serves test keys, the live one at the channel (docs/test-mode.md).

The configuration is sealed at rest (AES-256-GCM, bound to its row) like every secret the gateway keeps; the API
shows its public part only (ids, URLs, public keys) and the names of the secret fields, never their values. Storing
the same configuration again is a no-op (same version), so the call is safe to repeat.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from gateway.domain.access import Principal
from gateway.domain.errors import PARTNER_TEMPLATE_NOT_FOUND
from gateway.flows.identities import Identities
from gateway.store import partner_templates as store
from libs.common.errors import VALIDATION_FAILED, Problem

# A field whose value is never shown: private keys, API v3 keys, app secrets, passwords, tokens, PKCS#12 files.
SECRET_FIELD = re.compile(r"secret|private|password|apiv3|token|pfx|_key$", re.IGNORECASE)
# What the platform's template must name (the provider) and must not (a merchant's own ids go in the onboarding).
PROVIDER_FIELDS = {"wechatpay": ("sp_mchid", "sp_appid"), "alipay": ("app_id",)}
MERCHANT_FIELDS = {"wechatpay": ("sub_mchid", "sub_appid"), "alipay": ("app_auth_token", "seller_id")}
MERCHANT_REQUIRED = {"wechatpay": "sub_mchid", "alipay": "app_auth_token"}
DIRECT_FIELDS = {"wechatpay": ("mchid", "appid")}  # a direct merchant's own account: not a provider's template


def template_problems(channel: str, config: dict[str, Any]) -> list[str]:
    """Why `config` cannot be a provider template of `channel` (empty: it can)."""
    problems = [f"a {channel} partner template needs {f}" for f in PROVIDER_FIELDS[channel] if not config.get(f)]
    problems += [
        f"{f} is each merchant's (channels[].partner), not the template's"
        for f in MERCHANT_FIELDS[channel]
        if f in config
    ]
    problems += [
        f"{f} is a direct merchant's own account, not a provider's"
        for f in DIRECT_FIELDS.get(channel, ())
        if f in config
    ]
    return problems


def partner_problems(channel: str, partner: dict[str, Any]) -> list[str]:
    """Why `partner` cannot be a merchant's part of a `channel` partner configuration (empty: it can)."""
    if channel not in MERCHANT_FIELDS:
        return [f"{channel} has no partner mode here (wechatpay or alipay)"]
    problems = [
        f"unknown field {f} (a {channel} merchant's part is {', '.join(MERCHANT_FIELDS[channel])})"
        for f in partner
        if f not in MERCHANT_FIELDS[channel]
    ]
    if not partner.get(MERCHANT_REQUIRED[channel]):
        problems.append(f"a {channel} merchant's part needs {MERCHANT_REQUIRED[channel]}")
    problems += [
        f"{f} must be a string of 1..128 characters"
        for f, v in partner.items()
        if not isinstance(v, str) or not 0 < len(v) <= 128
    ]
    return problems


def public_part(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the fields that may be shown, the names of those that may not)."""
    secret = sorted(k for k in config if SECRET_FIELD.search(k))
    return {k: v for k, v in config.items() if k not in secret}, secret


def _fingerprint(config: dict[str, Any]) -> bytes:
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).digest()


def _row_id(platform_id: str, channel: str, mode: str) -> str:
    return f"partner-template/{platform_id}/{channel}/{mode}"


def _view(row: Any) -> dict[str, Any]:
    public = dict(row["public"])
    return {
        "channel": row["channel"],
        "mode": row["mode"],
        "version": row["version"],
        "config": public["config"],
        "secret_fields": public["secret_fields"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


class PartnerTemplates:
    def __init__(self, identities: Identities) -> None:
        self.identities = identities
        self.uow = identities.uow

    async def put(self, platform: Principal, channel: str, mode: str, config: dict[str, Any]) -> dict[str, Any]:
        problems = template_problems(channel, config)
        if problems:
            raise Problem(VALIDATION_FAILED, "; ".join(problems))
        shown, secret = public_part(config)
        sealed = self.identities.sealer.seal(json.dumps(config), row_id=_row_id(platform.platform_id, channel, mode))
        async with self.uow.begin() as tx:
            row = await store.put_template(
                tx.conn,
                platform_id=platform.platform_id,
                channel=channel,
                mode=mode,
                config_sealed=sealed,
                config_hash=_fingerprint(config),
                public={"config": shown, "secret_fields": secret},
            )
        return _view(row)

    async def read(self, platform: Principal, channel: str, mode: str) -> dict[str, Any]:
        async with self.uow.read() as conn:
            row = await store.get_template(conn, platform_id=platform.platform_id, channel=channel, mode=mode)
        if row is None:
            raise Problem(PARTNER_TEMPLATE_NOT_FOUND, f"no {mode} {channel} partner template")
        return _view(row)

    async def list(self, platform: Principal) -> list[dict[str, Any]]:
        async with self.uow.read() as conn:
            return [_view(row) for row in await store.list_templates(conn, platform.platform_id)]

    async def config_for(
        self, platform_id: str, channel: str, mode: str, partner: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The cashier configuration of a partner-mode merchant: the template with the merchant's part over it
        (None: the platform has no such template yet)."""
        async with self.uow.read() as conn:
            row = await store.get_template(conn, platform_id=platform_id, channel=channel, mode=mode)
        if row is None:
            return None
        template = json.loads(
            self.identities.sealer.open(row["config_sealed"], row_id=_row_id(platform_id, channel, mode))
        )
        return {**template, **partner}
