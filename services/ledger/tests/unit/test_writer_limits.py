"""The writer's queue is bounded: beyond it callers get `ledger_busy` (503, retryable) at once."""

from __future__ import annotations

import pytest

from libs.common.db import UnitOfWork, create_engine
from services.ledger.domain.engine import CreateTransfers
from services.ledger.domain.errors import LedgerError
from services.ledger.store.writer import LedgerWriter

from .harness import request


async def test_full_queue_answers_ledger_busy() -> None:
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none")  # never connected
    writer = LedgerWriter(UnitOfWork(engine, source="ledger"), queue_transfers_max=1)
    try:
        with pytest.raises(LedgerError) as info:
            await writer.submit(CreateTransfers((request("a", "b", 1), request("a", "b", 2))))
        assert info.value.code == "ledger_busy" and info.value.spec.status == 503 and info.value.spec.retryable
    finally:
        await writer.stop()
        await engine.dispose()
