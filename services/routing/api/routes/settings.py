"""Admin API for platform routing settings (/v1/routing-settings) and the audit trail (/v1/audit)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from libs.common.paging import PageLimit
from libs.common.web import UowDep
from services.routing.api.deps import ActorDep
from services.routing.api.schemas import (
    AuditEntryResponse,
    AuditListResponse,
    RoutingSettingsRequest,
    RoutingSettingsResponse,
)
from services.routing.store import config as store

router = APIRouter(tags=["settings"])


def _response(stored: store.StoredSettings) -> RoutingSettingsResponse:
    s = stored.settings
    return RoutingSettingsResponse(
        weights=asdict(s.weights),
        health=asdict(s.health),
        utc_offset_minutes=s.utc_offset_minutes,
        candidates_max=s.candidates_max,
        version=stored.version,
        config_version=stored.config_version,
    )


@router.get("/v1/routing-settings")
async def get_routing_settings(uow: UowDep) -> RoutingSettingsResponse:
    async with uow.read() as conn:
        return _response(await store.get_settings(conn))


@router.put("/v1/routing-settings")
async def put_routing_settings(body: RoutingSettingsRequest, uow: UowDep, actor: ActorDep) -> RoutingSettingsResponse:
    async with uow.begin() as tx:
        stored = await store.put_settings(tx, body.to_domain(), expected_version=body.expected_version, actor=actor)
    return _response(stored)


@router.get("/v1/audit")
async def list_audit(
    uow: UowDep,
    limit: PageLimit,
    resource_type: str | None = None,
    resource_id: str | None = None,
    after: str | None = None,
) -> AuditListResponse:
    async with uow.read() as conn:
        entries = await store.list_audit(
            conn, resource_type=resource_type, resource_id=resource_id, after=after, limit=limit
        )
    cursor = entries[-1].audit_id if len(entries) == limit else None
    return AuditListResponse(
        items=[AuditEntryResponse.model_validate(e, from_attributes=True) for e in entries], next_cursor=cursor
    )
