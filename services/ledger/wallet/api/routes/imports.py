"""Bulk migration endpoints (internal: under `/v1/internal`, which the gateway never forwards).

Called by services/migration only, one batch per request; every answer lists one result per item so the
caller records exactly which rows made it. Logic: wallet/store/imports.py; the flow: docs/migration.md.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from libs.common.web import UowDep
from services.ledger.api.deps import WriterDep
from services.ledger.domain.engine import Outcome
from services.ledger.wallet.domain import kyc
from services.ledger.wallet.domain.entitlements import HolderType, SubaccountType
from services.ledger.wallet.domain.errors import WalletError
from services.ledger.wallet.store import imports as store

router = APIRouter(prefix="/v1/internal/migration", tags=["migration (internal)"])

IMPORT_BATCH_MAX = 1000
_Id = Field(min_length=1, max_length=128)
_Currency = Field(pattern=r"^[A-Z]{3}$")


class HolderImportItem(BaseModel):
    holder_id: str = _Id
    holder_type: HolderType
    name: str = Field(min_length=1, max_length=100)
    document_number: str = Field(min_length=1, max_length=32)
    phone: str | None = Field(default=None, max_length=20)
    bank_card: str | None = Field(default=None, max_length=32)
    legal_person: str | None = Field(default=None, max_length=100)
    settlement_account: str | None = Field(default=None, max_length=32)
    verified: bool = False
    currency: str = _Currency


class HolderImportRequest(BaseModel):
    holders: list[HolderImportItem] = Field(min_length=1, max_length=IMPORT_BATCH_MAX)


class HolderImportResult(BaseModel):
    holder_id: str
    status: Literal["created", "existing", "conflict", "document_taken", "invalid"]
    detail: str | None = None


class ImportResultsResponse(BaseModel):
    results: list[HolderImportResult]


class OpeningImportItem(BaseModel):
    source_id: str = _Id
    holder_id: str = _Id
    subaccount: Literal["balance", "prepaid", "points", "credit"]
    amount_minor: int = Field(gt=0, le=2**62)  # credit: what is owed
    currency: str = _Currency
    merchant_holder_id: str = Field(default="", max_length=128)
    credit_limit_minor: int | None = Field(default=None, ge=0, le=2**62)  # credit: the line (≥ what is owed)


class OpeningImportRequest(BaseModel):
    run_id: str = _Id
    openings: list[OpeningImportItem] = Field(min_length=1, max_length=IMPORT_BATCH_MAX)


class TransferImportResult(BaseModel):
    source_id: str
    status: Literal["created", "replayed", "failed", "nothing_to_reverse"]
    transfer_id: str | None = None
    code: str | None = None
    detail: str | None = None


class TransferResultsResponse(BaseModel):
    results: list[TransferImportResult]


class ControlImportRequest(BaseModel):
    run_id: str = _Id
    currency: str = _Currency
    amount_minor: int = Field(gt=0, le=2**62)
    reverse: bool = False
    credit: bool = False  # the control of what users owe on credit lines (Dr suspense, Cr escrow_bank)


class ReversalImportRequest(BaseModel):
    run_id: str = _Id
    source_ids: list[str] = Field(min_length=1, max_length=IMPORT_BATCH_MAX)


class SuspenseAccount(BaseModel):
    account_id: str
    currency: str
    debits_posted: int
    credits_posted: int
    balance_minor: int


class SuspenseResponse(BaseModel):
    run_id: str
    accounts: list[SuspenseAccount]


def _checked(item: HolderImportItem) -> store.HolderImport:
    """The ledger checks documents again: it is the authority on what a holder may be opened with."""
    if item.holder_type is HolderType.PERSON:
        document = kyc.check_resident_id(item.document_number)
        phone = kyc.check_phone(item.phone) if item.phone else None
        card = kyc.check_bank_card(item.bank_card) if item.bank_card else None
    else:
        document = kyc.check_credit_code(item.document_number)
        phone, card = (kyc.check_phone(item.phone) if item.phone else None), None
    return store.HolderImport(
        holder_id=item.holder_id,
        holder_type=item.holder_type,
        name=item.name,
        document_number=document,
        phone=phone,
        bank_card=card,
        legal_person=item.legal_person,
        settlement_account=item.settlement_account,
        verified=item.verified,
        currency=item.currency,
    )


def _transfer_result(source_id: str, outcome: Outcome | None) -> TransferImportResult:
    if outcome is None:
        return TransferImportResult(source_id=source_id, status="nothing_to_reverse")
    if outcome.error is not None:
        err = outcome.error
        return TransferImportResult(source_id=source_id, status="failed", code=err.spec.code, detail=err.detail)
    assert outcome.transfer is not None
    status: Literal["created", "replayed"] = "replayed" if outcome.replayed else "created"
    return TransferImportResult(source_id=source_id, status=status, transfer_id=outcome.transfer.id)


@router.post("/holders")
async def import_holders(body: HolderImportRequest, uow: UowDep) -> ImportResultsResponse:
    """Opens every valid holder of the batch with its sub-accounts in one transaction."""
    checked: list[store.HolderImport] = []
    invalid: dict[str, str] = {}
    for item in body.holders:
        try:
            checked.append(_checked(item))
        except WalletError as exc:
            invalid[item.holder_id] = exc.spec.code
    opened = {r.holder_id: r.status for r in await store.open_holders(uow, checked)} if checked else {}
    return ImportResultsResponse(
        results=[
            HolderImportResult(holder_id=i.holder_id, status="invalid", detail=invalid[i.holder_id])
            if i.holder_id in invalid
            else HolderImportResult(holder_id=i.holder_id, status=opened[i.holder_id])  # type: ignore[arg-type]
            for i in body.holders
        ]
    )


@router.post("/openings")
async def import_openings(body: OpeningImportRequest, uow: UowDep, writer: WriterDep) -> TransferResultsResponse:
    openings = [
        store.OpeningImport(
            source_id=o.source_id,
            holder_id=o.holder_id,
            subaccount=SubaccountType(o.subaccount),
            amount_minor=o.amount_minor,
            currency=o.currency,
            merchant_holder_id=o.merchant_holder_id,
            credit_limit_minor=o.credit_limit_minor,
        )
        for o in body.openings
    ]
    outcomes = await store.post_openings(uow, writer, run_id=body.run_id, openings=openings)
    return TransferResultsResponse(
        results=[_transfer_result(o.source_id, out) for o, out in zip(body.openings, outcomes, strict=True)]
    )


@router.post("/controls")
async def import_control(body: ControlImportRequest, uow: UowDep, writer: WriterDep) -> TransferImportResult:
    outcome = await store.post_control(
        uow,
        writer,
        run_id=body.run_id,
        currency=body.currency,
        amount_minor=body.amount_minor,
        reverse=body.reverse,
        credit=body.credit,
    )
    return _transfer_result(f"control:{body.currency}", outcome)


@router.post("/reversals")
async def import_reversals(body: ReversalImportRequest, uow: UowDep, writer: WriterDep) -> TransferResultsResponse:
    outcomes = await store.post_reversals(uow, writer, run_id=body.run_id, source_ids=body.source_ids)
    return TransferResultsResponse(
        results=[_transfer_result(s, out) for s, out in zip(body.source_ids, outcomes, strict=True)]
    )


@router.get("/runs/{run_id}/suspense")
async def read_suspense(run_id: str, uow: UowDep) -> SuspenseResponse:
    async with uow.read() as conn:
        rows = await store.suspense_balances(conn, run_id)
    return SuspenseResponse(run_id=run_id, accounts=[SuspenseAccount(**r) for r in rows])
