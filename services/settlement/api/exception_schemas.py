"""Request and response shapes of the reconciliation exceptions pool (`/v1/settlement/reconciliation-exceptions`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from libs.common.paging import ListPage
from services.settlement.api.schemas import ReconciliationItemResponse
from services.settlement.domain.exceptions import ACTOR_LENGTH_MAX, REASON_LENGTH_MAX


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The staff member acting (the console sends its signed-in operator); kept on the item's trail.
    actor: str = Field(min_length=1, max_length=ACTOR_LENGTH_MAX, pattern=r"\S")


class ExceptionAssignRequest(_Request):
    assignee: str = Field(min_length=1, max_length=ACTOR_LENGTH_MAX, pattern=r"\S")


class ExceptionRequeryRequest(_Request):
    pass


class ExceptionResolveRequest(_Request):
    reason: str = Field(min_length=1, max_length=REASON_LENGTH_MAX, pattern=r"\S")


class ExceptionActionResponse(BaseModel):
    action: str
    actor: str
    detail: dict[str, Any]
    at: datetime


class ExceptionResponse(ReconciliationItemResponse):
    channel: str
    merchant_id: str
    bill_date: date
    found_at: datetime | None
    age_seconds: int
    ageing: str
    state: str
    assignee: str | None
    resolution_reason: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    requery_count: int
    last_requery: dict[str, Any] | None
    last_requery_at: datetime | None
    superseded: bool
    actions: list[ExceptionActionResponse] | None = Field(default=None, description="The trail (detail only)")


class ExceptionListResponse(ListPage[ExceptionResponse]):
    pass
