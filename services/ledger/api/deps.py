"""Dependencies of the ledger routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.ledger.store.writer import LedgerWriter

WRITER_EXTRA = "ledger_writer"


def get_writer(request: Request) -> LedgerWriter:
    writer: LedgerWriter = request.app.state.runtime.extras[WRITER_EXTRA]
    return writer


WriterDep = Annotated[LedgerWriter, Depends(get_writer)]
