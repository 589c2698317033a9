"""A tiny in-memory 'store' around BatchEngine, used by the unit and property tests.

It keeps accounts, transfers and idempotency keys between batches the way the database does, so the
tests exercise exactly what the real write path hands to the engine per batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from services.ledger.domain.accounts import Account, AccountFlags, NormalBalance
from services.ledger.domain.engine import BatchEngine, Command, CreateTransfers, Outcome
from services.ledger.domain.transfers import Direction, Posting, Transfer, TransferRequest

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Harness:
    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.transfers: dict[str, Transfer] = {}
        self.keys: dict[tuple[str, str], Transfer] = {}
        self.now = T0
        self._ids = itertools.count(1)
        self.entries: list = []
        self.events: list = []

    def open(
        self,
        account_id: str,
        *,
        currency: str = "CNY",
        normal_balance: NormalBalance = NormalBalance.CREDIT,
        no_overdraft: bool = False,
        no_overcredit: bool = False,
        credit_limit_minor: int = 0,
    ) -> Account:
        account = Account(
            id=account_id,
            holder_id="h",
            currency=currency,
            kind="test",
            code="2999",
            normal_balance=normal_balance,
            flags=AccountFlags(no_overdraft, no_overcredit),
            credit_limit_minor=credit_limit_minor,
        )
        self.accounts[account_id] = account
        return account

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def run(self, commands: Sequence[Command]) -> list[list[Outcome]]:
        engine = BatchEngine(
            accounts=self.accounts,
            transfers=self.transfers,
            known_keys=self.keys,
            known_transfer_ids=set(self.transfers),
            now=self.now,
            new_transfer_id=lambda: f"tr_{next(self._ids):06d}",
        )
        results = [engine.apply(c) for c in commands]
        for t in engine.effects.new_transfers:
            self.transfers[t.id] = t
        self.entries.extend(engine.effects.entries)
        self.events.extend(engine.effects.events)
        return results

    def run_one(self, command: Command) -> Outcome:
        return self.run([command])[0][0]


_keys = itertools.count(1)


def request(
    debit: str,
    credit: str,
    amount_minor: int,
    *,
    currency: str = "CNY",
    pending: bool = False,
    key: str | None = None,
    timeout_seconds: int | None = None,
    source: str = "test",
) -> TransferRequest:
    return TransferRequest(
        source=source,
        idempotency_key=key or f"k{next(_keys)}",
        postings=(
            Posting(debit, Direction.DEBIT, amount_minor, currency),
            Posting(credit, Direction.CREDIT, amount_minor, currency),
        ),
        pending=pending,
        timeout_seconds=timeout_seconds,
    )


def create(*requests: TransferRequest, linked: bool = False) -> CreateTransfers:
    return CreateTransfers(tuple(requests), linked=linked)
