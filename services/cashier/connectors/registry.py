"""Build a Connector from a merchant's stored channel config, and what the cashier must know per channel.

The stored config is plain JSON (what `PUT /v1/admin/merchants/{id}/channels/{channel}` received):
the connector's own config fields (keys, base URL, timeouts). Each connector module is imported
lazily so a channel whose folder is still being written does not break the others.

Per channel the cashier also needs: which scenes and currencies it can take (to refuse
`unsupported_scene` before anything is created), and the exact reply the channel expects when we
refuse a notification (WeChat: 4xx + `{"code":"FAIL"}`; Alipay: anything but `success`, by
convention `fail`; UnionPay: anything but HTTP 200; the e-CNY bank: anything but 200 + `{"code":"SUCCESS"}`).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from libs.common.errors import Problem
from services.cashier.connectors.base import Connector
from services.cashier.domain.errors import INVALID_CHANNEL_CONFIG, UNKNOWN_CHANNEL
from services.cashier.domain.payments import PaymentScene


@dataclass(frozen=True, slots=True)
class ChannelReply:
    status_code: int
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    name: str
    scenes: frozenset[PaymentScene]
    currencies: frozenset[str]
    build: Callable[[dict[str, Any]], Connector]
    refuse_notification: Callable[[str], ChannelReply]
    secret_fields: frozenset[str]
    # The channel can freeze a payment's funds and split them later (WeChat 分账 §1.11, Alipay royalty §2.9).
    profit_sharing: bool = False


def _build_alipay(config: dict[str, Any]) -> Connector:
    from services.cashier.connectors.alipay import AlipayConfig, AlipayConnector

    return AlipayConnector(AlipayConfig.model_validate(config))


def _build_wechatpay(config: dict[str, Any]) -> Connector:
    from services.cashier.connectors.wechatpay import WechatPayConfig, WechatPayConnector

    known = {f.name for f in dataclasses.fields(WechatPayConfig)}
    unknown = set(config) - known
    if unknown:
        raise ValueError(f"unknown wechatpay config fields: {sorted(unknown)}")
    return WechatPayConnector(WechatPayConfig(**config))


def _build_wallet(config: dict[str, Any]) -> Connector:
    from services.cashier.connectors.wallet import WalletConfig, WalletConnector

    return WalletConnector(WalletConfig.model_validate(config))


def _build_unionpay(config: dict[str, Any]) -> Connector:
    from services.cashier.connectors.unionpay import UnionPayConfig, UnionPayConnector

    return UnionPayConnector(UnionPayConfig.model_validate(config))


def _build_ecny(config: dict[str, Any]) -> Connector:
    from services.cashier.connectors.ecny import EcnyConfig, EcnyConnector

    return EcnyConnector(EcnyConfig.model_validate(config))


def _wechat_refusal(message: str) -> ChannelReply:
    body = json.dumps({"code": "FAIL", "message": message[:200]}, ensure_ascii=False).encode("utf-8")
    return ChannelReply(401, body, "application/json")


def _alipay_refusal(message: str) -> ChannelReply:
    return ChannelReply(200, b"fail", "text/plain")


def _unionpay_refusal(message: str) -> ChannelReply:
    """UnionPay resends (about 5 times over 12 minutes) until it reads HTTP 200: any other status refuses."""
    return ChannelReply(400, b"fail", "text/plain")


def _ecny_refusal(message: str) -> ChannelReply:
    """The e-CNY bank resends until 200 + `{"code":"SUCCESS"}` (docs/protocols/ecny.md §5)."""
    body = json.dumps({"code": "FAIL", "message": message[:200]}, ensure_ascii=False).encode("utf-8")
    return ChannelReply(401, body, "application/json")


CHANNELS: dict[str, ChannelSpec] = {
    "wechatpay": ChannelSpec(
        name="wechatpay",
        scenes=frozenset(
            {PaymentScene.NATIVE_QR, PaymentScene.JSAPI, PaymentScene.MINI_PROGRAM, PaymentScene.APP, PaymentScene.H5}
        ),
        currencies=frozenset({"CNY"}),
        build=_build_wechatpay,
        refuse_notification=_wechat_refusal,
        secret_fields=frozenset({"merchant_private_key_pem", "apiv3_key", "app_secret"}),
        profit_sharing=True,
    ),
    "alipay": ChannelSpec(
        name="alipay",
        scenes=frozenset(
            {
                PaymentScene.NATIVE_QR,
                PaymentScene.PAGE,
                PaymentScene.H5,
                PaymentScene.APP,
                PaymentScene.JSAPI,
                PaymentScene.MINI_PROGRAM,
            }
        ),
        currencies=frozenset({"CNY"}),
        build=_build_alipay,
        refuse_notification=_alipay_refusal,
        secret_fields=frozenset({"app_private_key_pem", "app_auth_token"}),
        profit_sharing=True,
    ),
    # UnionPay online payment (全渠道 ACP 5.1.0): web (channelType 07), mobile web (08), app `tn`.
    "unionpay": ChannelSpec(
        name="unionpay",
        scenes=frozenset({PaymentScene.PAGE, PaymentScene.H5, PaymentScene.APP}),
        currencies=frozenset({"CNY"}),
        build=_build_unionpay,
        refuse_notification=_unionpay_refusal,
        secret_fields=frozenset({"sign_pfx_base64", "sign_pfx_password"}),
    ),
    # e-CNY through an acquiring bank (Juhe's model protocol, docs/protocols/ecny.md): wallet-app QR and H5.
    "ecny": ChannelSpec(
        name="ecny",
        scenes=frozenset({PaymentScene.NATIVE_QR, PaymentScene.H5}),
        currencies=frozenset({"CNY"}),
        build=_build_ecny,
        refuse_notification=_ecny_refusal,
        secret_fields=frozenset({"merchant_private_key_hex", "sm4_key_hex"}),
    ),
    # The platform wallet: the ledger is the institution (two-phase transfer); it sends no notifications.
    "wallet": ChannelSpec(
        name="wallet",
        scenes=frozenset({PaymentScene.WALLET}),
        currencies=frozenset({"CNY"}),
        build=_build_wallet,
        refuse_notification=_alipay_refusal,
        secret_fields=frozenset(),
    ),
}


def channel_spec(channel: str) -> ChannelSpec:
    spec = CHANNELS.get(channel)
    if spec is None:
        raise Problem(UNKNOWN_CHANNEL, f"no connector named {channel!r}", known=sorted(CHANNELS))
    return spec


def build_connector(channel: str, config: dict[str, Any]) -> Connector:
    """A ready connector, or `invalid_channel_config` naming what is wrong."""
    spec = channel_spec(channel)
    try:
        return spec.build(config)
    except (ValidationError, ValueError, TypeError) as exc:
        raise Problem(INVALID_CHANNEL_CONFIG, f"{channel}: {exc}"[:500]) from exc


# What each channel's connector calls (the config fields holding its hosts) and the default a left-out field takes
# (`module:CONSTANT`, the connector's production host; None: no default). Test mode decides from these whether a
# configuration points at a sandbox (domain/modes.py).
_ENDPOINT_FIELDS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "wechatpay": (("base_url", "services.cashier.connectors.wechatpay.models:PRODUCTION_BASE_URL"),),
    "alipay": (("gateway_url", "services.cashier.connectors.alipay.models:PRODUCTION_GATEWAY_URL"),),
    "unionpay": (
        ("base_url", "services.cashier.connectors.unionpay.models:PRODUCTION_BASE_URL"),
        ("file_base_url", None),
    ),
    "ecny": (("base_url", None),),
    "wallet": (("ledger_url", None),),
}


def channel_endpoints(channel: str, config: dict[str, Any]) -> list[str]:
    """The URLs a connector built from `config` would call (left-out fields at their production defaults)."""
    urls: list[str] = []
    for name, default in _ENDPOINT_FIELDS.get(channel, ()):
        value = config.get(name)
        if not value and default is not None:
            module, _, constant = default.partition(":")
            value = getattr(importlib.import_module(module), constant)
        if isinstance(value, str) and value:
            urls.append(value)
    return urls


def redacted(channel: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config as the API may show it: secrets replaced by a marker."""
    secrets = channel_spec(channel).secret_fields
    return {k: ("***" if k in secrets and v else v) for k, v in config.items()}


async def close_connector(connector: Connector) -> None:
    closer = getattr(connector, "aclose", None)
    if closer is not None:
        await closer()
