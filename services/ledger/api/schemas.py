"""Request and response schemas of the ledger API (pydantic)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from libs.common.money import Currency


class AccountCreateRequest(BaseModel):
    holder_id: str = Field(min_length=1, max_length=64, examples=["mch_demo"])
    currency: Currency
    kind: str = Field(min_length=1, max_length=32, examples=["merchant_pending"])
    code: str = Field(min_length=1, max_length=32, examples=["2201"])
    metadata: dict[str, Any] = Field(default_factory=dict)


class AccountResponse(BaseModel):
    id: str
    holder_id: str
    currency: str
    kind: str
    code: str
    status: str
    metadata: dict[str, Any]
    created_at: datetime
