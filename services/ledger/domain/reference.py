"""A deliberately naive in-memory ledger: the model the property tests compare the real thing against.

It shares only the request/posting dataclasses with the engine, not its arithmetic: balances are plain
dicts, every rule is written out again in the most obvious way, one operation at a time, no batching,
no snapshots. If the batch engine or the database write path drift from these few lines, hypothesis
finds the sequence that shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.ledger.domain.transfers import Direction, TransferRequest

MAX = 2**63 - 1


@dataclass
class RefAccount:
    currency: str
    no_overdraft: bool = False  # debits_must_not_exceed_credits
    no_overcredit: bool = False  # credits_must_not_exceed_debits
    credit_limit_minor: int = 0
    status: str = "active"
    dp: int = 0  # debits_posted
    cp: int = 0  # credits_posted
    dq: int = 0  # debits_pending
    cq: int = 0  # credits_pending


@dataclass
class RefTransfer:
    postings: list[tuple[str, str, int]]  # account, "debit"/"credit", amount
    status: str
    body: tuple[object, ...]
    pending: bool
    posted: list[int] = field(default_factory=list)


@dataclass
class ReferenceLedger:
    accounts: dict[str, RefAccount] = field(default_factory=dict)
    transfers: dict[str, RefTransfer] = field(default_factory=dict)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    counter: int = 0

    def open(self, account_id: str, account: RefAccount) -> None:
        self.accounts[account_id] = account

    # --- checks --------------------------------------------------------------------------------------
    def _shape_error(self, r: TransferRequest) -> str | None:
        if len(r.postings) < 2:
            return "too_few_postings"
        if len(r.postings) > 64:
            return "too_many_postings"
        totals: dict[str, int] = {}
        for p in r.postings:
            if p.amount_minor <= 0:
                return "amount_must_be_positive"
            if p.amount_minor > MAX:
                return "amount_exceeds_maximum"
            totals[p.currency] = totals.get(p.currency, 0) + (
                p.amount_minor if p.direction == Direction.DEBIT else -p.amount_minor
            )
        if any(totals.values()):
            return "transfer_unbalanced"
        return None

    def _limits_ok(self, snapshot: dict[str, RefAccount]) -> str | None:
        for a in snapshot.values():
            if max(a.dp, a.cp, a.dq, a.cq) > MAX:
                return "balance_overflow"
            if a.no_overdraft and a.dp + a.dq > a.cp + a.credit_limit_minor:
                return "insufficient_funds"
            if a.no_overcredit and a.cp + a.cq > a.dp + a.credit_limit_minor:
                return "credits_exceed_debits"
        return None

    @staticmethod
    def _body(r: TransferRequest) -> tuple[object, ...]:
        return (
            tuple((p.account_id, p.direction.value, p.amount_minor, p.currency) for p in r.postings),
            r.pending,
            r.timeout_seconds,
            r.reference,
            r.corrects_transfer_id,
            tuple(sorted(r.metadata.items())),
        )

    # --- operations ----------------------------------------------------------------------------------
    def create(self, r: TransferRequest) -> tuple[str | None, str | None]:
        """Returns (error code or None, transfer id or None)."""
        shape = self._shape_error(r)
        if shape:
            return shape, None
        key = (r.source, r.idempotency_key)
        if key in self.keys:
            tid = self.keys[key]
            return (None, tid) if self.transfers[tid].body == self._body(r) else ("idempotency_key_reused", None)
        for p in r.postings:
            a = self.accounts.get(p.account_id)
            if a is None:
                return "account_not_found", None
            if a.currency != p.currency:
                return "currency_mismatch", None
            if a.status == "closed":
                return "account_closed", None
            if a.status == "frozen" and p.direction == Direction.DEBIT:
                return "account_frozen", None
        if r.corrects_transfer_id is not None and r.corrects_transfer_id not in self.transfers:
            return "corrected_transfer_not_found", None
        snapshot = {p.account_id: RefAccount(**vars(self.accounts[p.account_id])) for p in r.postings}
        for p in r.postings:
            a = snapshot[p.account_id]
            if p.direction == Direction.DEBIT:
                if r.pending:
                    a.dq += p.amount_minor
                else:
                    a.dp += p.amount_minor
            elif r.pending:
                a.cq += p.amount_minor
            else:
                a.cp += p.amount_minor
        error = self._limits_ok(snapshot)
        if error:
            return error, None
        self.accounts.update(snapshot)
        self.counter += 1
        tid = f"t{self.counter}"
        self.transfers[tid] = RefTransfer(
            [(p.account_id, p.direction.value, p.amount_minor) for p in r.postings],
            "pending" if r.pending else "posted",
            self._body(r),
            r.pending,
        )
        self.keys[key] = tid
        return None, tid

    def create_linked(self, requests: list[TransferRequest]) -> list[tuple[str | None, str | None]]:
        saved = (
            {k: RefAccount(**vars(v)) for k, v in self.accounts.items()},
            dict(self.transfers),
            dict(self.keys),
            self.counter,
        )
        results = []
        for i, r in enumerate(requests):
            result = self.create(r)
            results.append(result)
            if result[0] is not None:
                self.accounts, self.transfers, self.keys, self.counter = saved
                return [result if j == i else ("linked_event_failed", None) for j in range(len(requests))]
        return results

    def finish(self, tid: str, post_amount_minor: int | None, *, void: bool) -> str | None:
        """Posts (full when amount is None) or voids a pending transfer; returns an error code or None."""
        t = self.transfers.get(tid)
        if t is None:
            return "transfer_not_found"
        if not t.pending:
            return "transfer_not_pending"
        if t.status == "posted":
            asked = [amount if post_amount_minor is None else post_amount_minor for _, _, amount in t.postings]
            return None if not void and asked == t.posted else "pending_transfer_already_posted"
        if t.status == "voided":
            return None if void else "pending_transfer_already_voided"
        if not void and post_amount_minor is not None:
            if post_amount_minor <= 0:
                return "amount_must_be_positive"
            if len({amount for _, _, amount in t.postings}) != 1 or post_amount_minor > t.postings[0][2]:
                return "post_amount_invalid"
        t.posted = []
        for account_id, direction, amount in t.postings:
            a = self.accounts[account_id]
            posted = 0 if void else (amount if post_amount_minor is None else post_amount_minor)
            t.posted.append(posted)
            if direction == "debit":
                a.dq -= amount
                a.dp += posted
            else:
                a.cq -= amount
                a.cp += posted
        t.status = "voided" if void else "posted"
        return None

    def balances(self, account_id: str) -> tuple[int, int, int, int]:
        a = self.accounts[account_id]
        return (a.dp, a.cp, a.dq, a.cq)
