"""Settlement's mirror of the ledger's accounts (`account.opened` events, table `ledger_accounts`): the first place
the ledger client looks for an account before it asks the ledger (services/settlement/clients/ledger.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

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
