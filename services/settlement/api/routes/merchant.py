"""Merchant self-service: its statement (settled, settling, pending) and a CSV of its transactions and fees.

Every query is scoped by the authenticated merchant (MerchantScope): merchant A never sees merchant B, and by
mode (docs/test-mode.md): a key sees its own mode's money only; a caller without a key mode (a console session)
picks one with `?livemode=`, else sees both (rows and batches marked `livemode`, totals over both: a console should
ask for one mode).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from libs.common.internal_auth import CallerLivemode, MerchantScope
from libs.common.paging import KnownQueryOnly
from libs.common.web import UowDep
from services.settlement.api.deps import BatchCursor, PageLimit
from services.settlement.api.schemas import BatchListResponse, BatchResponse, StatementResponse, batch_page
from services.settlement.store import cycles
from services.settlement.store.tables import payment_records

router = APIRouter(prefix="/v1/statements", tags=["statements"])
STATEMENT_BATCHES_MAX = 100
CSV_ROWS_MAX = 100_000
CSV_COLUMNS = (
    "payment_id",
    "merchant_order_no",
    "channel",
    "status",
    "amount_minor",
    "currency",
    "refunded_minor",
    "platform_fee_minor",
    "succeeded_at",
    "settle_date",
    "livemode",
)


@router.get("/current")
async def statement(merchant_id: MerchantScope, uow: UowDep, livemode: CallerLivemode) -> StatementResponse:
    async with uow.read() as conn:
        balances = await cycles.totals(conn, merchant_id, livemode=livemode)
        batches = await cycles.batches_of(conn, merchant_id, STATEMENT_BATCHES_MAX, livemode=livemode)
    return StatementResponse(
        merchant_id=merchant_id,
        balances=balances,
        batches=[BatchResponse(**{k: b[k] for k in BatchResponse.model_fields}) for b in batches],
    )


@router.get("/transactions.csv")
async def transactions_csv(
    merchant_id: MerchantScope,
    uow: UowDep,
    livemode: CallerLivemode,
    date_from: Annotated[date | None, Query(alias="from")] = None,
    date_to: Annotated[date | None, Query(alias="to")] = None,
) -> StreamingResponse:
    """The merchant's payments with the platform fee charged and when each settles (the channel's cost to
    the platform is not the merchant's business and is left out)."""
    query = select(*(payment_records.c[c] for c in CSV_COLUMNS)).where(payment_records.c.merchant_id == merchant_id)
    if livemode is not None:
        query = query.where(payment_records.c.livemode == livemode)
    if date_from:
        query = query.where(payment_records.c.bill_date >= date_from)
    if date_to:
        query = query.where(payment_records.c.bill_date <= date_to)
    query = query.order_by(payment_records.c.payment_id).limit(CSV_ROWS_MAX)

    async def rows() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        # A server-side cursor lives in a transaction: read() is autocommit (libs/common/db.py), begin() is not.
        async with uow.begin() as tx:
            result = await tx.conn.stream(query)
            async for row in result:
                writer.writerow(["" if v is None else str(v).lower() if isinstance(v, bool) else v for v in row])
                if buffer.tell() > 64_000:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()

    disposition = f'attachment; filename="{merchant_id}-transactions.csv"'
    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers={"Content-Disposition": disposition})


@router.get("/batches", dependencies=[KnownQueryOnly])
async def statement_batches(
    merchant_id: MerchantScope, uow: UowDep, limit: PageLimit, livemode: CallerLivemode, cursor: BatchCursor = None
) -> BatchListResponse:
    """The merchant's settlement batches of one mode, newest first; `next_cursor` pages on."""
    async with uow.read() as conn:
        rows = await cycles.batches_page(conn, merchant_id, cursor, limit + 1, livemode=livemode)
    return batch_page(rows, limit)
