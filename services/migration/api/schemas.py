"""Request and response bodies of the migration API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from libs.common.paging import ListPage

_Path = Field(default=None, min_length=1, max_length=255)


class RunCreateRequest(BaseModel):
    """Files by name inside the service's import directory (`JUHE_MIGRATION_IMPORT_DIR`), where the platform
    drops them (a shared volume or an object-store mount); large files never travel through the gateway."""

    dry_run: bool = True
    merchants: str | None = _Path
    persons: str | None = _Path
    balances: str | None = _Path
    coupons: str | None = _Path
    control: str | None = _Path
    encoding: Literal["auto", "utf-8", "gbk"] = "auto"


class RunResponse(BaseModel):
    id: str
    platform: str
    mode: str
    status: str
    created_at: datetime
    updated_at: datetime
    finalised_at: datetime | None
    report: dict[str, Any] | None


class RunListResponse(ListPage[RunResponse]):
    """Newest run first."""
