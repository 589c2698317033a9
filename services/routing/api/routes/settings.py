"""Admin API for platform routing settings (/v1/routing-settings) and the audit trail (/v1/audit)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from libs.common.paging import KnownQueryOnly, PageLimit, cursor_query
from libs.common.web import UowDep
from services.routing.api.deps import ActorDep
from services.routing.api.routes.rules import AUDIT_CURSOR, audit_entry
from services.routing.api.schemas import (
    AuditListResponse,
    RoutingSettingsRequest,
    RoutingSettingsResponse,
)
from services.routing.store import audit
from services.routing.store import settings as store

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


AuditResourceType = Literal[
    "channel_route", "contract", "fee_rate", "merchant_profile", "rule", "settings", "special_rate_application"
]


@router.get("/v1/audit", dependencies=[KnownQueryOnly])
async def list_audit(
    uow: UowDep,
    limit: PageLimit,
    resource_type: AuditResourceType | None = None,
    resource_id: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, cursor_query(AUDIT_CURSOR)] = None,
) -> AuditListResponse:
    """Every configuration change, oldest first; an unknown `resource_type` is 422."""
    async with uow.read() as conn:
        entries = await audit.list_audit(
            conn, resource_type=resource_type, resource_id=resource_id, after=cursor, limit=limit + 1
        )
    return AuditListResponse.of(entries, limit, item=audit_entry, cursor_of=lambda e: e.audit_id)
