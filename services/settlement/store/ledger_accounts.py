"""Settlement's mirror of the ledger's accounts (`account.opened` events, table `ledger_accounts`): the first place
the ledger client looks for an account before it asks the ledger (services/settlement/clients/ledger.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import UnitOfWork
from services.settlement.store.tables import ledger_accounts


@dataclass(frozen=True)
class MirroredAccounts:
    uow: UnitOfWork

    async def account_id(self, holder_id: str, kind: str, currency: str, *, livemode: bool) -> str | None:
        """The first mirrored account of (holder, kind, currency) in the book `livemode`, if any."""
        async with self.uow.read() as conn:
            found = await conn.scalar(
                select(ledger_accounts.c.account_id)
                .where(
                    ledger_accounts.c.holder_id == holder_id,
                    ledger_accounts.c.kind == kind,
                    ledger_accounts.c.currency == currency,
                    ledger_accounts.c.livemode == livemode,
                )
                .order_by(ledger_accounts.c.mirrored_seq)
                .limit(1)
            )
        return str(found) if found else None


async def mirror_opened(
    conn: AsyncConnection,
    *,
    account_id: str,
    holder_id: str,
    currency: str,
    kind: str,
    opened_at: datetime,
    source_event_id: str,
    livemode: bool,
) -> None:
    """Mirror one `account.opened`. The inbox already guarantees one application per event id; counting
    repeats (`applied_count`) keeps tests honest."""
    stmt = insert(ledger_accounts).values(
        account_id=account_id,
        holder_id=holder_id,
        currency=currency,
        kind=kind,
        opened_at=opened_at,
        source_event_id=source_event_id,
        livemode=livemode,
    )
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[ledger_accounts.c.account_id],
            set_={"applied_count": ledger_accounts.c.applied_count + 1},
        )
    )
