"""Consumers of other services' events. Each runs inside the inbox transaction (exactly-once effect)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.dialects.postgresql import insert

from libs.common.db import Tx
from libs.common.events import Envelope
from services.settlement.store.tables import ledger_accounts


async def on_account_opened(tx: Tx, event: Envelope) -> None:
    data = event.data
    stmt = insert(ledger_accounts).values(
        account_id=data["id"],
        holder_id=data["holder_id"],
        currency=data["currency"],
        kind=data["kind"],
        opened_at=datetime.fromisoformat(data["created_at"]),
        source_event_id=event.id,
    )
    # The inbox already guarantees one application per event id; counting keeps tests honest.
    await tx.conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[ledger_accounts.c.account_id],
            set_={"applied_count": ledger_accounts.c.applied_count + 1},
        )
    )
