"""The batch engine: applies many ledger commands to in-memory account snapshots, one after another.

Why it exists (the hot-account design): the store locks every account a batch touches *once*, reads their
counters, lets this engine apply hundreds of commands in memory in submission order, then writes one
UPDATE per touched account, one bulk insert of transfers, postings and entries and one of events. A hot
account (platform fee income, channel clearing) is then locked once per batch instead of once per
transfer, and each command still sees the exact balance left by the one before it, so limits hold exactly.

Each command succeeds or fails on its own: a transfer that would overdraw is rejected without failing
its batch. A linked group succeeds or fails as a whole: on the first failure every effect of the group is
rolled back in memory and the other members fail with `linked_event_failed`.

Pure Python: no I/O, no clock, no id generation of its own (both are injected), so it is unit-testable and
the hypothesis model tests drive it directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from services.ledger.domain import errors
from services.ledger.domain.accounts import Account, AccountStatus, Balances, limit_violation
from services.ledger.domain.errors import LedgerError
from services.ledger.domain.transfers import (
    Direction,
    Transfer,
    TransferPosting,
    TransferRequest,
    TransferStatus,
    resolve_post_amounts,
)


class EntryKind(StrEnum):
    POSTED = "posted"  # a transfer created posted: posted counter += amount
    PENDING = "pending"  # a pending transfer reserves: pending counter += amount
    PENDING_POSTED = "pending_posted"  # pending -= reserved, posted += posted amount
    PENDING_VOIDED = "pending_voided"  # pending -= reserved
    PENDING_EXPIRED = "pending_expired"  # pending -= reserved, by timeout


@dataclass(slots=True)  # not frozen: frozen dataclasses pay object.__setattr__ per field, per entry
class Entry:
    """One line of an account's history: which counter moved by how much, and all four counters after.

    Keeping the counters after each entry makes statements (running balance) and balance-as-of a single
    indexed lookup, and lets `verify` re-add the deltas and compare.
    """

    account_id: str
    transfer_id: str
    kind: EntryKind
    direction: Direction
    posted_delta_minor: int  # >= 0, added to debits_posted or credits_posted
    pending_delta_minor: int  # signed, added to debits_pending or credits_pending
    currency: str
    balances_after: tuple[int, int, int, int]  # debits_posted, credits_posted, debits_pending, credits_pending
    created_at: datetime


@dataclass(slots=True)
class Event:
    type: str
    subject: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CreateTransfers:
    requests: tuple[TransferRequest, ...]
    linked: bool = False


@dataclass(frozen=True, slots=True)
class PostPending:
    transfer_id: str
    amount_minor: int | None = None
    amounts_minor: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class VoidPending:
    transfer_id: str
    expired: bool = False  # set by the expiry task: the timeout passed


Command = CreateTransfers | PostPending | VoidPending


@dataclass(slots=True)
class Outcome:
    """The answer to one transfer of a command. `replayed` = idempotent repeat, nothing was written."""

    transfer: Transfer | None = None
    error: LedgerError | None = None
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class BatchEffects:
    """What the store must write for the batch (all in one database transaction)."""

    new_transfers: list[Transfer] = field(default_factory=list)
    finalized_transfers: list[Transfer] = field(default_factory=list)  # pending → posted/voided/expired
    entries: list[Entry] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def touched_account_ids(self) -> list[str]:
        return sorted({e.account_id for e in self.entries})


def _iso(value: datetime | None, cache: dict[datetime, str]) -> str | None:
    """isoformat, memoised: within a batch nearly every timestamp is the batch's `now`."""
    if value is None:
        return None
    text = cache.get(value)
    if text is None:
        text = cache[value] = value.isoformat()
    return text


def transfer_event_data(
    t: Transfer, iso_cache: dict[datetime, str] | None = None, *, livemode: bool = True
) -> dict[str, Any]:
    """Event payload: enough for a consumer to act without calling back (ids, postings, amounts, and the book
    `livemode` its accounts are in: a transfer never mixes books).

    Built on the hot path (one per transfer), so plain dicts and the StrEnum members themselves (they
    are `str`) rather than `.value` lookups.
    """
    cache = iso_cache if iso_cache is not None else {}
    return {
        "transfer_id": t.id,
        "status": str(t.status),
        "source": t.source,
        "idempotency_key": t.idempotency_key,
        "reference": t.reference,
        "corrects_transfer_id": t.corrects_transfer_id,
        "pending": t.pending,
        "postings": [
            {
                "account_id": p.account_id,
                "direction": str(p.direction),
                "amount_minor": p.amount_minor,
                "posted_amount_minor": p.posted_amount_minor,
                "currency": p.currency,
            }
            for p in t.postings
        ],
        "metadata": t.metadata,
        "created_at": _iso(t.created_at, cache),
        "timeout_at": _iso(t.timeout_at, cache),
        "finalized_at": _iso(t.finalized_at, cache),
        "livemode": livemode,
    }


def _restore_balances(account: Account, balances: Balances) -> Callable[[], None]:
    def undo() -> None:
        account.balances = balances

    return undo


class BatchEngine:
    """Applies commands to the snapshots it was given; the caller must hold locks on all of them.

    accounts: every account any command of the batch may touch (missing = does not exist).
    transfers: the pending transfers that post/void commands name (missing = does not exist).
    known_keys: existing transfers by `(source, idempotency_key)` for the keys in the batch.
    known_transfer_ids: ids that `corrects_transfer_id` may reference and that exist.
    """

    def __init__(
        self,
        *,
        accounts: dict[str, Account],
        transfers: dict[str, Transfer],
        known_keys: dict[tuple[str, str], Transfer],
        known_transfer_ids: set[str],
        now: datetime,
        new_transfer_id: Callable[[], str],
    ) -> None:
        self.accounts = accounts
        self.transfers = transfers
        self.known_keys = known_keys
        self.known_transfer_ids = known_transfer_ids
        self.now = now
        self.new_transfer_id = new_transfer_id
        self.effects = BatchEffects()
        self._journal = []
        self._iso_cache: dict[datetime, str] = {}

    # --- entry point -----------------------------------------------------------------------------------
    def apply(self, command: Command) -> list[Outcome]:
        if isinstance(command, CreateTransfers):
            if command.linked:
                return self._create_linked(command.requests)
            return [self._atomic(self._create, r) for r in command.requests]
        if isinstance(command, PostPending):
            return [self._atomic(self._post, command)]
        return [self._atomic(self._void, command)]

    def _atomic(self, fn: Callable[[Any], Outcome], arg: Any) -> Outcome:
        """Runs one command atomically in memory: on a LedgerError nothing it did remains."""
        mark = len(self._journal)
        try:
            return fn(arg)
        except LedgerError as e:
            self._undo_to(mark)
            return Outcome(error=e)

    # --- undo journal: every in-memory mutation records how to undo itself ---------------------------
    _journal: list[Callable[[], None]]

    def _undo_to(self, mark: int) -> None:
        while len(self._journal) > mark:
            self._journal.pop()()

    # Outside a linked group a command changes state only once nothing can fail any more, so only
    # two-phase transfer states (changed before their moves are checked) are always journaled.
    _linked = False

    def _append(self, items: list[Any], item: Any) -> None:
        items.append(item)
        if self._linked:
            self._journal.append(items.pop)

    def _save_transfer(self, transfer: Transfer) -> None:
        status, finalized_at = transfer.status, transfer.finalized_at
        amounts = [p.posted_amount_minor for p in transfer.postings]

        def undo() -> None:
            transfer.status, transfer.finalized_at = status, finalized_at
            for p, a in zip(transfer.postings, amounts, strict=True):
                p.posted_amount_minor = a

        self._journal.append(undo)

    def _remember(self, key: tuple[str, str], transfer: Transfer) -> None:
        self.known_keys[key] = transfer
        self.known_transfer_ids.add(transfer.id)
        if not self._linked:
            return

        def undo() -> None:
            del self.known_keys[key]
            self.known_transfer_ids.discard(transfer.id)

        self._journal.append(undo)

    # --- create -----------------------------------------------------------------------------------------
    def _create_linked(self, requests: Sequence[TransferRequest]) -> list[Outcome]:
        mark = len(self._journal)
        outcomes: list[Outcome] = []
        self._linked = True
        try:
            for i, request in enumerate(requests):
                try:
                    outcomes.append(self._create(request))
                except LedgerError as e:
                    self._undo_to(mark)
                    failed = LedgerError(
                        errors.LINKED_EVENT_FAILED, f"transfer {i} of the linked batch failed", failed_index=i
                    )
                    return [Outcome(error=e) if j == i else Outcome(error=failed) for j in range(len(requests))]
        finally:
            self._linked = False
            del self._journal[mark:]  # committed or undone: either way nothing left to undo
        return outcomes

    def _event_data(self, transfer: Transfer) -> dict[str, Any]:
        """The transfer's event payload with its book (that of its accounts, one book by the rule of `_create`)."""
        first = self.accounts.get(transfer.postings[0].account_id) if transfer.postings else None
        return transfer_event_data(transfer, self._iso_cache, livemode=first is None or first.livemode)

    def _account(self, account_id: str) -> Account:
        account = self.accounts.get(account_id)
        if account is None:
            raise LedgerError(errors.ACCOUNT_NOT_FOUND, f"account {account_id} not found", account_id=account_id)
        return account

    def _create(self, request: TransferRequest) -> Outcome:
        request.validate()
        body_hash = request.body_hash()
        key = (request.source, request.idempotency_key)
        existing = self.known_keys.get(key)
        if existing is not None:
            if existing.body_hash == body_hash:
                return Outcome(transfer=existing, replayed=True)
            raise LedgerError(
                errors.IDEMPOTENCY_KEY_REUSED,
                f"key {request.idempotency_key!r} of {request.source!r} was used with another body",
                transfer_id=existing.id,
            )
        book: bool | None = None
        for p in request.postings:
            account = self._account(p.account_id)
            if book is None:
                book = account.livemode
            elif account.livemode != book:  # test money never moves live money (docs/ledger.md "Books")
                raise LedgerError(
                    errors.BOOKS_MIXED, f"account {account.id} is in the other book", account_id=account.id
                )
            if account.currency != p.currency:
                raise LedgerError(
                    errors.CURRENCY_MISMATCH,
                    f"account {account.id} holds {account.currency}, posting says {p.currency}",
                    account_id=account.id,
                )
            if account.status is AccountStatus.CLOSED:
                raise LedgerError(errors.ACCOUNT_CLOSED, f"account {account.id} is closed", account_id=account.id)
            if account.status is AccountStatus.FROZEN and p.direction is Direction.DEBIT:
                raise LedgerError(errors.ACCOUNT_FROZEN, f"account {account.id} is frozen", account_id=account.id)
        if request.corrects_transfer_id is not None and request.corrects_transfer_id not in self.known_transfer_ids:
            raise LedgerError(errors.CORRECTED_TRANSFER_NOT_FOUND, f"transfer {request.corrects_transfer_id} not found")

        transfer = Transfer(
            id=self.new_transfer_id(),
            source=request.source,
            idempotency_key=request.idempotency_key,
            body_hash=body_hash,
            status=TransferStatus.PENDING if request.pending else TransferStatus.POSTED,
            postings=[
                TransferPosting(
                    p.account_id,
                    p.direction,
                    p.amount_minor,
                    p.currency,
                    0 if request.pending else p.amount_minor,
                )
                for p in request.postings
            ],
            pending=request.pending,
            created_at=self.now,
            timeout_at=(self.now + timedelta(seconds=request.timeout_seconds) if request.timeout_seconds else None),
            reference=request.reference,
            corrects_transfer_id=request.corrects_transfer_id,
            metadata=dict(request.metadata),
            finalized_at=None if request.pending else self.now,
        )
        kind = EntryKind.PENDING if request.pending else EntryKind.POSTED
        self._move(
            transfer,
            [
                (
                    p.account_id,
                    p.direction,
                    0 if request.pending else p.amount_minor,
                    p.amount_minor if request.pending else 0,
                    p.currency,
                )
                for p in request.postings
            ],
            kind,
        )
        self._append(self.effects.new_transfers, transfer)
        self._remember(key, transfer)
        event_type = "transfer.pending" if request.pending else "transfer.posted"
        self._append(self.effects.events, Event(event_type, transfer.id, self._event_data(transfer)))
        return Outcome(transfer=transfer)

    def _move(
        self,
        transfer: Transfer,
        moves: list[tuple[str, Direction, int, int, str]],
        kind: EntryKind,
    ) -> None:
        """Applies (account, direction, posted delta, pending delta, currency) moves if no limit breaks.

        Limits are checked on the counters after the whole transfer (an account may appear in several
        postings) *before* anything changes, so a refused transfer needs no undo; inside a linked group
        the changes are journaled so a later member's failure can undo them.
        """
        after: dict[str, Balances] = {}
        for account_id, direction, posted_delta, pending_delta, _ in moves:
            b = after.get(account_id)
            if b is None:
                b = after[account_id] = self._account(account_id).balances.copy()
            if direction is Direction.DEBIT:
                b.debits_posted += posted_delta
                b.debits_pending += pending_delta
            else:
                b.credits_posted += posted_delta
                b.credits_pending += pending_delta
        for account_id, b in after.items():
            violation = limit_violation(self.accounts[account_id], b)
            if violation is not None:
                raise LedgerError(violation, f"account {account_id}: {violation.title.lower()}", account_id=account_id)
        if len(after) == len(moves):  # the usual case: each account once, its entry shows the final counters
            counters_after = [after[m[0]].as_tuple() for m in moves]
        else:  # an account twice: running counters posting by posting
            running = {a: self.accounts[a].balances.copy() for a in after}
            counters_after = []
            for account_id, direction, posted_delta, pending_delta, _ in moves:
                r = running[account_id]
                if direction is Direction.DEBIT:
                    r.debits_posted += posted_delta
                    r.debits_pending += pending_delta
                else:
                    r.credits_posted += posted_delta
                    r.credits_pending += pending_delta
                counters_after.append(r.as_tuple())
        for account_id, b in after.items():
            account = self.accounts[account_id]
            if self._linked:
                self._journal.append(_restore_balances(account, account.balances))
            account.balances = b
        now, transfer_id = self.now, transfer.id
        for (account_id, direction, posted_delta, pending_delta, currency), counters in zip(
            moves, counters_after, strict=True
        ):
            self._append(
                self.effects.entries,
                Entry(account_id, transfer_id, kind, direction, posted_delta, pending_delta, currency, counters, now),
            )

    # --- two-phase ------------------------------------------------------------------------------------
    def _pending_transfer(self, transfer_id: str) -> Transfer:
        transfer = self.transfers.get(transfer_id)
        if transfer is None:
            raise LedgerError(errors.TRANSFER_NOT_FOUND, f"transfer {transfer_id} not found")
        if not transfer.pending:
            raise LedgerError(errors.TRANSFER_NOT_PENDING, f"transfer {transfer_id} was not created pending")
        return transfer

    def _expire(self, transfer: Transfer) -> None:
        self._release(transfer, expired=True)

    def _release(self, transfer: Transfer, *, expired: bool) -> None:
        self._save_transfer(transfer)
        transfer.void(self.now, expired=expired)
        self._move(
            transfer,
            [(p.account_id, p.direction, 0, -p.amount_minor, p.currency) for p in transfer.postings],
            EntryKind.PENDING_EXPIRED if expired else EntryKind.PENDING_VOIDED,
        )
        self._append(self.effects.finalized_transfers, transfer)
        event_type = "transfer.expired" if expired else "transfer.voided"
        self._append(self.effects.events, Event(event_type, transfer.id, self._event_data(transfer)))

    def _post(self, command: PostPending) -> Outcome:
        transfer = self._pending_transfer(command.transfer_id)
        if transfer.status is TransferStatus.POSTED:
            # Retrying the same post is harmless: same amounts → the transfer as it is.
            try:
                again = resolve_post_amounts(transfer, command.amount_minor, command.amounts_minor)
            except LedgerError:
                again = None
            if again == [p.posted_amount_minor for p in transfer.postings]:
                return Outcome(transfer=transfer, replayed=True)
        transfer.require_pending()
        if transfer.is_timed_out(self.now):
            self._expire(transfer)
            # The expiry is a real effect even though the post failed: keep it, report the failure.
            return Outcome(error=LedgerError(errors.PENDING_TRANSFER_EXPIRED, f"transfer {transfer.id} expired"))
        amounts = resolve_post_amounts(transfer, command.amount_minor, command.amounts_minor)
        self._save_transfer(transfer)
        transfer.post(amounts, self.now)
        self._move(
            transfer,
            [
                (p.account_id, p.direction, a, -p.amount_minor, p.currency)
                for p, a in zip(transfer.postings, amounts, strict=True)
            ],
            EntryKind.PENDING_POSTED,
        )
        self._append(self.effects.finalized_transfers, transfer)
        self._append(self.effects.events, Event("transfer.posted", transfer.id, self._event_data(transfer)))
        return Outcome(transfer=transfer)

    def _void(self, command: VoidPending) -> Outcome:
        transfer = self._pending_transfer(command.transfer_id)
        if transfer.status is TransferStatus.VOIDED and not command.expired:
            return Outcome(transfer=transfer, replayed=True)
        if transfer.status is TransferStatus.EXPIRED and command.expired:
            return Outcome(transfer=transfer, replayed=True)
        if command.expired:
            if transfer.status is TransferStatus.PENDING and not transfer.is_timed_out(self.now):
                # The expiry task read a stale timeout; never expire early.
                return Outcome(transfer=transfer, replayed=True)
            if transfer.status is not TransferStatus.PENDING:
                return Outcome(transfer=transfer, replayed=True)
            self._release(transfer, expired=True)
            return Outcome(transfer=transfer)
        if transfer.is_timed_out(self.now):
            self._expire(transfer)
            return Outcome(error=LedgerError(errors.PENDING_TRANSFER_EXPIRED, f"transfer {transfer.id} expired"))
        self._release(transfer, expired=False)
        return Outcome(transfer=transfer)
