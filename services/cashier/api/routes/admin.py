"""Platform admin: a merchant's webhook secret / default notify URL, and its channel configs.

Not for merchants: the gateway must only expose `/v1/admin` to platform operators.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from libs.common.errors import Problem
from services.cashier.api.deps import CashierDep
from services.cashier.api.schemas import (
    MerchantChannelPatchRequest,
    MerchantChannelRequest,
    MerchantChannelResponse,
    MerchantResponse,
    MerchantUpdateRequest,
)
from services.cashier.connectors.registry import build_connector, channel_endpoints, close_connector, redacted
from services.cashier.domain.errors import CHANNEL_CONFIG_CHANGED, CHANNEL_CONFIG_NOT_FOUND, MERCHANT_NOT_FOUND
from services.cashier.domain.modes import config_mode
from services.cashier.flows import merchants as merchant_flow
from services.cashier.flows.context import Cashier
from services.cashier.flows.webhook_targets import ensure_allowed_notify_url
from services.cashier.store.merchants import (
    channel_configs,
    get_merchant,
    list_channels,
    patch_channel,
    upsert_channel,
)

router = APIRouter(prefix="/v1/admin/merchants", tags=["admin"])


@router.put("/{merchant_id}")
async def put_merchant(merchant_id: str, body: MerchantUpdateRequest, cashier: CashierDep) -> MerchantResponse:
    """Without `webhook_secret`, a merchant new to the cashier gets the gateway's (flows/merchants.py)."""
    ensure_allowed_notify_url(cashier.settings, body.notify_url)
    row = await merchant_flow.put_merchant(
        cashier, merchant_id, webhook_secret=body.webhook_secret, notify_url=body.notify_url
    )
    return _merchant_response(cashier, row)


@router.get("/{merchant_id}")
async def read_merchant(merchant_id: str, cashier: CashierDep) -> MerchantResponse:
    async with cashier.uow.read() as conn:
        row = await get_merchant(conn, merchant_id)
    if row is None:
        raise Problem(MERCHANT_NOT_FOUND, f"merchant {merchant_id} does not exist")
    return _merchant_response(cashier, row)


def _merchant_response(cashier: Cashier, row: Any) -> MerchantResponse:
    """The platform's view of the merchant: its webhook secret opened from the seal (platform-only route)."""
    secret = merchant_flow.merchant_webhook_secret(cashier.sealer, row)
    return MerchantResponse(merchant_id=row.merchant_id, webhook_secret=secret, notify_url=row.notify_url)


@router.put("/{merchant_id}/channels/{channel}")
async def put_channel(
    merchant_id: str, channel: str, body: MerchantChannelRequest, cashier: CashierDep
) -> MerchantChannelResponse:
    await close_connector(build_connector(channel, body.config))  # refuses a config the connector cannot use
    endpoints = channel_endpoints(channel, cashier.connectors.effective_config(channel, body.config))
    mode = config_mode(channel, endpoints, body.mode, cashier.sandbox_hosts())  # test only at sandboxes
    await merchant_flow.open_merchant(cashier, merchant_id)  # the gateway's webhook secret, never a second one
    async with cashier.uow.begin() as tx:
        row = await upsert_channel(
            tx.conn,
            merchant_id=merchant_id,
            channel=channel,
            priority=body.priority,
            enabled=body.enabled,
            config=body.config,
            mode=mode,
        )
    return _channel_response(cashier, row)


@router.patch("/{merchant_id}/channels/{channel}")
async def change_channel(
    merchant_id: str, channel: str, body: MerchantChannelPatchRequest, cashier: CashierDep
) -> MerchantChannelResponse:
    """Enable, disable or re-prioritise one configuration (by mode) without resending its secrets: the operator
    console's switch. A compare-and-set on the version read, so two operators never overwrite each other; the
    config itself (keys, endpoints, so its mode) is untouched, and the bumped version makes every replica's pool
    read it again."""
    changes = body.model_dump(include={"enabled", "priority"}, exclude_none=True)
    async with cashier.uow.begin() as tx:
        row = await patch_channel(
            tx.conn, merchant_id=merchant_id, channel=channel, mode=body.mode, version=body.version, changes=changes
        )
        if row is None:
            existing = [r for r in await channel_configs(tx.conn, merchant_id, channel) if r.mode == body.mode]
    if row is not None:
        return _channel_response(cashier, row)
    if not existing:
        raise Problem(CHANNEL_CONFIG_NOT_FOUND, f"merchant {merchant_id} has no {body.mode} {channel} configuration")
    raise Problem(
        CHANNEL_CONFIG_CHANGED,
        f"the {body.mode} {channel} configuration is at version "
        f"{existing[0].version}, not {body.version}: read it again",
        version=existing[0].version,
    )


@router.get("/{merchant_id}/channels")
async def read_channels(merchant_id: str, cashier: CashierDep) -> list[MerchantChannelResponse]:
    async with cashier.uow.read() as conn:
        rows = await list_channels(conn, merchant_id, enabled_only=False)
    return [_channel_response(cashier, r) for r in rows]


def _channel_response(cashier: Cashier, row: Any) -> MerchantChannelResponse:
    return MerchantChannelResponse(
        merchant_id=row.merchant_id,
        channel=row.channel,
        priority=row.priority,
        enabled=row.enabled,
        mode=row.mode,
        version=row.version,
        config=redacted(row.channel, dict(row.config)),
        notify_url=cashier.notify_url(row.channel, row.merchant_id),
    )
