"""Transfers: two or more postings that balance per currency, posted at once or in two phases.

State machine of a pending (two-phase) transfer, as in TigerBeetle:

    pending ──post(amounts ≤ reserved)──▶ posted
       │ └────────void()─────────────────▶ voided
       └──────timeout passed──────────────▶ expired

A transfer created with `pending=False` is born `posted`. Posted, voided and expired are final: a posted
transfer is never edited; a correction is a new transfer whose `corrects_transfer_id` references it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.ledger.domain import errors
from services.ledger.domain.accounts import MAX_AMOUNT_MINOR, check_currency
from services.ledger.domain.errors import LedgerError

POSTINGS_PER_TRANSFER_MAX = 64
TIMEOUT_SECONDS_MAX = 90 * 24 * 3600  # a hold longer than a quarter is a business decision, not a timeout
BATCH_SIZE_MAX = 1000  # transfers per API batch request


class Direction(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


DIRECTIONS: dict[str, Direction] = {d.value: d for d in Direction}
"""`DIRECTIONS[s]` is several times cheaper than `Direction(s)` on the hot path (enum __call__)."""


class TransferStatus(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self is not TransferStatus.PENDING


@dataclass(frozen=True, slots=True)
class Posting:
    account_id: str
    direction: Direction
    amount_minor: int
    currency: str


def check_amount(amount_minor: object, what: str = "amount_minor") -> int:
    """Amounts are strictly positive ints that fit a bigint; bools are not amounts."""
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool):
        raise LedgerError(errors.VALIDATION_FAILED, f"{what} must be an integer number of minor units")
    if amount_minor <= 0:
        raise LedgerError(errors.AMOUNT_MUST_BE_POSITIVE, f"{what} must be > 0, got {amount_minor}")
    if amount_minor > MAX_AMOUNT_MINOR:
        raise LedgerError(errors.AMOUNT_EXCEEDS_MAXIMUM, f"{what} must be <= 2^63-1, got {amount_minor}")
    return amount_minor


def validate_postings(postings: Sequence[Posting]) -> None:
    """Shape rules that need no account data: count, positive bounded amounts, balanced per currency."""
    if len(postings) < 2:
        raise LedgerError(errors.TOO_FEW_POSTINGS, f"got {len(postings)} posting(s), need at least 2")
    if len(postings) > POSTINGS_PER_TRANSFER_MAX:
        raise LedgerError(errors.TOO_MANY_POSTINGS, f"at most {POSTINGS_PER_TRANSFER_MAX} postings")
    net: dict[str, int] = {}
    for i, p in enumerate(postings):
        amount = p.amount_minor
        if type(amount) is not int or not 0 < amount <= MAX_AMOUNT_MINOR:  # fast path; details below
            check_amount(amount, f"postings[{i}].amount_minor")
        currency = p.currency
        if currency not in net:
            check_currency(currency)
            net[currency] = 0
        net[currency] += amount if p.direction is Direction.DEBIT else -amount
    for currency, difference in net.items():
        if difference != 0:
            raise LedgerError(
                errors.TRANSFER_UNBALANCED, f"{currency}: debits - credits = {difference}", currency=currency
            )


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """A request to create one transfer. `(source, idempotency_key)` is unique in the whole ledger."""

    source: str
    idempotency_key: str
    postings: tuple[Posting, ...]
    pending: bool = False
    timeout_seconds: int | None = None
    reference: str | None = None
    corrects_transfer_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.source or not self.idempotency_key:
            raise LedgerError(errors.VALIDATION_FAILED, "source and idempotency_key are required")
        if len(self.source) > 64 or len(self.idempotency_key) > 255:
            raise LedgerError(errors.VALIDATION_FAILED, "source ≤ 64 and idempotency_key ≤ 255 characters")
        if not (
            self.source.isprintable()
            and self.idempotency_key.isprintable()
            and (self.reference is None or (self.reference.isprintable() and self.reference != ""))
        ):
            raise LedgerError(
                errors.VALIDATION_FAILED,
                "source, idempotency_key and reference: no control characters, reference not empty",
            )
        validate_postings(self.postings)
        if self.timeout_seconds is not None:
            if not self.pending:
                raise LedgerError(errors.INVALID_TIMEOUT, "timeout_seconds is only for pending transfers")
            if not 1 <= self.timeout_seconds <= TIMEOUT_SECONDS_MAX:
                raise LedgerError(errors.INVALID_TIMEOUT, f"timeout_seconds must be 1..{TIMEOUT_SECONDS_MAX}")

    def body_hash(self) -> str:
        """Fingerprint of everything but the key: same key + same hash = replay, other hash = 409.

        `repr` of a tuple of str/int/bool/None is unambiguous (strings are quoted and escaped) and much
        cheaper than JSON on the hot path; only metadata, a free-form dict, goes through sorted JSON.
        """
        body = (
            tuple((p.account_id, str(p.direction), p.amount_minor, p.currency) for p in self.postings),
            self.pending,
            self.timeout_seconds,
            self.reference,
            self.corrects_transfer_id,
            json.dumps(self.metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            if self.metadata
            else "",
        )
        return hashlib.sha256(repr(body).encode()).hexdigest()


@dataclass(slots=True)
class TransferPosting:
    """A stored posting: what was asked (`amount_minor`) and, once posted, what was posted."""

    account_id: str
    direction: Direction
    amount_minor: int
    currency: str
    posted_amount_minor: int = 0


@dataclass(slots=True)
class Transfer:
    id: str
    source: str
    idempotency_key: str
    body_hash: str
    status: TransferStatus
    postings: list[TransferPosting]
    pending: bool
    created_at: datetime
    timeout_at: datetime | None = None
    reference: str | None = None
    corrects_transfer_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    finalized_at: datetime | None = None  # when it became posted / voided / expired

    # --- named state changes -----------------------------------------------------------------------------
    def require_pending(self) -> None:
        if self.status is TransferStatus.POSTED:
            raise LedgerError(errors.PENDING_TRANSFER_ALREADY_POSTED, f"transfer {self.id} is posted")
        if self.status is TransferStatus.VOIDED:
            raise LedgerError(errors.PENDING_TRANSFER_ALREADY_VOIDED, f"transfer {self.id} is voided")
        if self.status is TransferStatus.EXPIRED:
            raise LedgerError(errors.PENDING_TRANSFER_EXPIRED, f"transfer {self.id} expired")

    def post(self, amounts_minor: Sequence[int], now: datetime) -> None:
        """pending → posted with `amounts_minor[i] ≤ postings[i].amount_minor`, still balanced."""
        self.require_pending()
        for p, a in zip(self.postings, amounts_minor, strict=True):
            p.posted_amount_minor = a
        self.status = TransferStatus.POSTED
        self.finalized_at = now

    def void(self, now: datetime, *, expired: bool = False) -> None:
        self.require_pending()
        self.status = TransferStatus.EXPIRED if expired else TransferStatus.VOIDED
        self.finalized_at = now

    def is_timed_out(self, now: datetime) -> bool:
        return self.status is TransferStatus.PENDING and self.timeout_at is not None and now >= self.timeout_at


def resolve_post_amounts(
    transfer: Transfer, amount_minor: int | None, amounts_minor: Sequence[int] | None
) -> list[int]:
    """Turns a post request into per-posting amounts.

    - neither given: post in full;
    - `amount_minor`: a smaller single amount, allowed when every posting reserved the same amount (the
      usual two-posting hold: user wallet → merchant);
    - `amounts_minor`: one amount per posting (multi-party holds), each 0..reserved, balanced per
      currency, at least one positive.
    """
    reserved = [p.amount_minor for p in transfer.postings]
    if amount_minor is not None and amounts_minor is not None:
        raise LedgerError(errors.POST_AMOUNT_INVALID, "give amount_minor or amounts_minor, not both")
    if amount_minor is None and amounts_minor is None:
        return reserved
    if amount_minor is not None:
        check_amount(amount_minor)
        if len(set(reserved)) != 1:
            raise LedgerError(
                errors.POST_AMOUNT_INVALID,
                "postings reserved different amounts: give amounts_minor per posting",
            )
        if amount_minor > reserved[0]:
            raise LedgerError(errors.POST_AMOUNT_INVALID, f"amount_minor {amount_minor} exceeds pending {reserved[0]}")
        return [amount_minor] * len(reserved)
    assert amounts_minor is not None
    amounts = list(amounts_minor)
    if len(amounts) != len(reserved):
        raise LedgerError(errors.POST_AMOUNT_INVALID, f"need {len(reserved)} amounts, one per posting")
    net: dict[str, int] = {}
    for i, (p, a) in enumerate(zip(transfer.postings, amounts, strict=True)):
        if not isinstance(a, int) or isinstance(a, bool) or a < 0 or a > p.amount_minor:
            raise LedgerError(errors.POST_AMOUNT_INVALID, f"amounts_minor[{i}] must be 0..{p.amount_minor}")
        net[p.currency] = net.get(p.currency, 0) + (a if p.direction is Direction.DEBIT else -a)
    if any(net.values()) or not any(amounts):
        raise LedgerError(errors.POST_AMOUNT_INVALID, "posted amounts must balance per currency and be > 0")
    return amounts
