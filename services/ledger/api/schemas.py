"""Request and response schemas of the ledger API (pydantic).

Amounts in transfer requests are plain strict ints here on purpose: the domain, not pydantic, says
*why* an amount is refused (`amount_must_be_positive`, `amount_exceeds_maximum`), with the same codes
for the single and the batch endpoint.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, StrictInt

from libs.common.paging import ListPage
from services.ledger.domain.transfers import BATCH_SIZE_MAX, Transfer

# The account shapes are defined with the account.* event payload (the event carries the API shape) and
# re-exported here, so the API, the consumers and the wallet store share one definition.
from services.ledger.events.accounts import AccountCreateRequest as AccountCreateRequest
from services.ledger.events.accounts import AccountFlagsSchema as AccountFlagsSchema
from services.ledger.events.accounts import AccountResponse as AccountResponse
from services.ledger.events.accounts import BalancesSchema as BalancesSchema
from services.ledger.events.accounts import balances_schema as balances_schema

ID_MAX = 64


class AccountListResponse(ListPage[AccountResponse]):
    """A holder's accounts by id (libs.common.paging: the one list shape)."""


class BalanceResponse(BaseModel):
    account_id: str
    currency: str
    as_of: datetime | None
    balances: BalancesSchema


class PostingSchema(BaseModel):
    account_id: str = Field(min_length=1, max_length=ID_MAX)
    direction: Literal["debit", "credit"]
    amount_minor: StrictInt
    # Shape only (checked in Rust, no Python call per posting): the ledger then requires it to equal the
    # account's currency, which was checked against ISO 4217 when the account was opened.
    currency: str = Field(pattern=r"^[A-Z]{3}$", examples=["CNY"])


class TransferCreateRequest(BaseModel):
    source: str = Field(min_length=1, max_length=64, examples=["cashier"])
    idempotency_key: str = Field(min_length=1, max_length=255, examples=["pay_0193…:succeeded"])
    postings: list[PostingSchema] = Field(max_length=1000)
    pending: bool = False
    timeout_seconds: StrictInt | None = None
    reference: str | None = Field(default=None, min_length=1, max_length=128)
    corrects_transfer_id: str | None = Field(default=None, max_length=ID_MAX)
    metadata: dict[str, Any] = Field(default_factory=dict)


class TransferBatchRequest(BaseModel):
    transfers: list[TransferCreateRequest] = Field(description=f"1..{BATCH_SIZE_MAX} transfers")
    linked: bool = Field(default=False, description="All succeed or none does")


class TransferPostRequest(BaseModel):
    amount_minor: StrictInt | None = Field(default=None, description="Post less than reserved (two postings)")
    amounts_minor: list[StrictInt] | None = Field(default=None, max_length=64, description="One per posting")


class TransferPostingResponse(BaseModel):
    account_id: str
    direction: str
    amount_minor: int
    posted_amount_minor: int
    currency: str


class TransferResponse(BaseModel):
    id: str
    source: str
    idempotency_key: str
    status: str
    pending: bool
    postings: list[TransferPostingResponse]
    reference: str | None
    corrects_transfer_id: str | None
    metadata: dict[str, Any]
    created_at: datetime
    timeout_at: datetime | None
    finalized_at: datetime | None
    replayed: bool = False

    @classmethod
    def of(cls, t: Transfer, *, replayed: bool = False) -> TransferResponse:
        return cls(
            id=t.id,
            source=t.source,
            idempotency_key=t.idempotency_key,
            status=t.status.value,
            pending=t.pending,
            postings=[
                TransferPostingResponse(
                    account_id=p.account_id,
                    direction=p.direction.value,
                    amount_minor=p.amount_minor,
                    posted_amount_minor=p.posted_amount_minor,
                    currency=p.currency,
                )
                for p in t.postings
            ],
            reference=t.reference,
            corrects_transfer_id=t.corrects_transfer_id,
            metadata=t.metadata,
            created_at=t.created_at,
            timeout_at=t.timeout_at,
            finalized_at=t.finalized_at,
            replayed=replayed,
        )


class TransferBatchItem(BaseModel):
    index: int
    outcome: Literal["created", "replayed", "failed"]
    transfer_id: str | None = None
    status: str | None = None
    error: dict[str, Any] | None = Field(default=None, description="problem+json body of this transfer")


class TransferBatchResponse(BaseModel):
    linked: bool
    created: int
    replayed: int
    failed: int
    results: list[TransferBatchItem]


class EntryResponse(BaseModel):
    id: int
    transfer_id: str
    reference: str | None
    kind: str
    direction: str
    posted_delta_minor: int
    pending_delta_minor: int
    currency: str
    balances_after: BalancesSchema
    created_at: datetime


class StatementResponse(ListPage[EntryResponse]):
    """One page of an account's entries oldest first, in the one list shape plus the account it is of."""

    account_id: str
    currency: str
