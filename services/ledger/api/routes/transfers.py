"""Transfers: create (single, batch, linked batch), read, post or void a pending transfer.

Every write goes through the batching writer (store/writer.py); routes only translate.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse

from libs.common.errors import Problem
from libs.common.web import UowDep
from services.ledger.api.deps import WriterDep
from services.ledger.api.schemas import (
    TransferBatchRequest,
    TransferBatchResponse,
    TransferCreateRequest,
    TransferPostRequest,
    TransferResponse,
)
from services.ledger.domain import errors
from services.ledger.domain.engine import CreateTransfers, Outcome, PostPending, VoidPending
from services.ledger.domain.transfers import BATCH_SIZE_MAX, DIRECTIONS, Posting, TransferRequest
from services.ledger.store import queries

router = APIRouter(prefix="/v1/transfers", tags=["transfers"])


def to_domain(body: TransferCreateRequest) -> TransferRequest:
    return TransferRequest(
        source=body.source,
        idempotency_key=body.idempotency_key,
        postings=tuple(
            Posting(p.account_id, DIRECTIONS[p.direction], p.amount_minor, p.currency) for p in body.postings
        ),
        pending=body.pending,
        timeout_seconds=body.timeout_seconds,
        reference=body.reference,
        corrects_transfer_id=body.corrects_transfer_id,
        metadata=body.metadata,
    )


def _answer(outcome: Outcome, response: Response, *, created_status: int = status.HTTP_201_CREATED) -> TransferResponse:
    if outcome.error is not None:
        raise outcome.error
    assert outcome.transfer is not None
    response.status_code = status.HTTP_200_OK if outcome.replayed else created_status
    return TransferResponse.of(outcome.transfer, replayed=outcome.replayed)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_transfer(body: TransferCreateRequest, writer: WriterDep, response: Response) -> TransferResponse:
    """201 created; 200 with `replayed: true` for a repeat of the same key and body."""
    request = to_domain(body)
    request.validate()  # shape errors answer at once, without queueing
    [outcome] = await writer.submit(CreateTransfers((request,)))
    return _answer(outcome, response)


@router.post("/batch", response_model=TransferBatchResponse)
async def create_transfers(body: TransferBatchRequest, writer: WriterDep) -> Response:
    """Up to 1000 transfers in one request. `linked: true` = all or nothing (409 with every result if not).

    The answer is compact (id and status per transfer) so a client can push thousands per second;
    `GET /v1/transfers/{id}` gives the full transfer.
    """
    if not body.transfers:
        raise Problem(errors.BATCH_EMPTY, "transfers is empty")
    if len(body.transfers) > BATCH_SIZE_MAX:
        raise Problem(errors.BATCH_TOO_LARGE, f"at most {BATCH_SIZE_MAX} transfers per batch")
    outcomes = await writer.submit(CreateTransfers(tuple(to_domain(t) for t in body.transfers), linked=body.linked))
    results = []
    counts = {"created": 0, "replayed": 0, "failed": 0}
    for i, o in enumerate(outcomes):
        if o.error is not None:
            kind = "failed"
            item = {"index": i, "outcome": kind, "error": o.error.body()}
        else:
            assert o.transfer is not None
            kind = "replayed" if o.replayed else "created"
            item = {"index": i, "outcome": kind, "transfer_id": o.transfer.id, "status": o.transfer.status.value}
        counts[kind] += 1
        results.append(item)
    content = {"linked": body.linked, **counts, "results": results}
    if body.linked and counts["failed"]:
        failed = next(o.error for o in outcomes if o.error is not None and o.error.code != "linked_event_failed")
        assert failed is not None
        problem = failed.body("/v1/transfers/batch") | {"linked": True, **counts, "results": results}
        return JSONResponse(problem, status_code=failed.spec.status, media_type="application/problem+json")
    return JSONResponse(content, status_code=status.HTTP_200_OK)


@router.get("")
async def find_transfer(source: str, idempotency_key: str, uow: UowDep) -> TransferResponse:
    """The transfer stored for a business event's `(source, idempotency_key)`, e.g. after a lost answer."""
    async with uow.read() as conn:
        transfer = await queries.get_transfer_by_key(conn, source, idempotency_key)
    if transfer is None:
        raise Problem(errors.TRANSFER_NOT_FOUND, f"no transfer for {source!r} / {idempotency_key!r}")
    return TransferResponse.of(transfer)


@router.get("/{transfer_id}")
async def read_transfer(transfer_id: str, uow: UowDep) -> TransferResponse:
    async with uow.read() as conn:
        transfer = await queries.get_transfer(conn, transfer_id)
    if transfer is None:
        raise Problem(errors.TRANSFER_NOT_FOUND, f"transfer {transfer_id} does not exist")
    return TransferResponse.of(transfer)


@router.post("/{transfer_id}/post")
async def post_transfer(
    transfer_id: str, writer: WriterDep, response: Response, body: TransferPostRequest | None = None
) -> TransferResponse:
    """Posts a pending transfer in full, or `amount_minor` (two postings) / `amounts_minor` (one per posting)."""
    body = body or TransferPostRequest()
    amounts = tuple(body.amounts_minor) if body.amounts_minor is not None else None
    [outcome] = await writer.submit(PostPending(transfer_id, amount_minor=body.amount_minor, amounts_minor=amounts))
    return _answer(outcome, response, created_status=status.HTTP_200_OK)


@router.post("/{transfer_id}/void")
async def void_transfer(transfer_id: str, writer: WriterDep, response: Response) -> TransferResponse:
    [outcome] = await writer.submit(VoidPending(transfer_id))
    return _answer(outcome, response, created_status=status.HTTP_200_OK)
