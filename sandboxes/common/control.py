"""The control API every sandbox shares: health probes, fault switches and the delivery log.

Channel-specific control routes (approve, decline, bills...) live in each sandbox's own app.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from sandboxes.common.faults import LATENCY_MS_MAX, FaultSettings
from sandboxes.common.notify import NotificationDispatcher


class FaultsUpdateRequest(BaseModel):
    """Partial update: omitted fields keep their value."""

    model_config = ConfigDict(extra="forbid")

    error_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    latency_ms: int | None = Field(default=None, ge=0, le=LATENCY_MS_MAX)
    dark: bool | None = None
    duplicate_notifications: bool | None = None
    out_of_order_notifications: bool | None = None
    seed: int | None = None


def build_common_router(*, channel: str, faults: FaultSettings, dispatcher: NotificationDispatcher) -> APIRouter:
    router = APIRouter()

    @router.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok", "channel": channel}

    @router.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready", "channel": channel}

    @router.get("/control/faults")
    async def get_faults() -> dict[str, Any]:
        return faults.as_dict()

    @router.put("/control/faults")
    async def put_faults(update: FaultsUpdateRequest) -> dict[str, Any]:
        try:
            faults.update(update.model_dump(exclude_none=True))
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return faults.as_dict()

    @router.get("/control/notifications")
    async def list_deliveries(subject: str | None = None, limit: int = 200) -> dict[str, Any]:
        records = [r.as_dict() for r in dispatcher.deliveries if subject is None or r.subject == subject]
        return {"pending": dispatcher.pending_count, "deliveries": records[-max(1, min(limit, 2000)) :]}

    return router
