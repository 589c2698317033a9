"""Accounts and their balance counters (TigerBeetle vocabulary).

An account keeps four monotonic-in-meaning counters: `debits_posted`, `credits_posted`, `debits_pending`,
`credits_pending`. Everything else (posted balance, available balance, limit checks) is derived from them,
so there is exactly one source of truth and `verify` can recompute all four from the entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from services.ledger.domain import errors
from services.ledger.domain.errors import ErrorSpec, LedgerError

MAX_AMOUNT_MINOR = 2**63 - 1
"""Every amount and every balance counter fits a PostgreSQL bigint; beyond it the ledger refuses."""

_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


def check_currency(currency: str) -> str:
    """ISO 4217 alphabetic code shape; the API layer checks it against the real code list."""
    if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
        raise LedgerError(errors.INVALID_CURRENCY, f"not an ISO 4217 code: {currency!r}")
    return currency


class NormalBalance(StrEnum):
    """The side on which an account's balance is reported as positive.

    Assets and expenses are debit-normal (a channel clearing account grows with debits); liabilities,
    equity and income are credit-normal (a user wallet grows with credits). It only changes how balances
    are *reported*; the four counters and the limit flags do not depend on it.
    """

    DEBIT = "debit"
    CREDIT = "credit"

    @classmethod
    def for_code(cls, code: str) -> NormalBalance:
        """Default from the chart-of-accounts code (docs/ledger.md): 1xxx assets, 5xxx expenses → debit."""
        return cls.DEBIT if code[:1] in ("1", "5") else cls.CREDIT


class AccountStatus(StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"  # refuses new debits, still takes credits
    CLOSED = "closed"  # refuses everything


@dataclass(frozen=True, slots=True)
class AccountFlags:
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False

    def __post_init__(self) -> None:
        if self.debits_must_not_exceed_credits and self.credits_must_not_exceed_debits:
            raise LedgerError(
                errors.VALIDATION_FAILED,
                "debits_must_not_exceed_credits and credits_must_not_exceed_debits exclude each other",
            )


@dataclass(slots=True)
class Balances:
    """The four counters. Mutable on purpose: the batch engine updates them in place per batch."""

    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def copy(self) -> Balances:
        return Balances(self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending)


@dataclass(slots=True)
class Account:
    """One ledger account. `holder_id` is opaque to the ledger (platform / merchant / user id).

    `kind` names the business role (`user_wallet`, `merchant_pending`, `channel_clearing`…) and `code` the
    chart-of-accounts line; both are open strings so later sub-account types need no schema change.
    """

    id: str
    holder_id: str
    currency: str
    kind: str
    code: str
    normal_balance: NormalBalance = NormalBalance.CREDIT
    flags: AccountFlags = field(default_factory=AccountFlags)
    credit_limit_minor: int = 0
    status: AccountStatus = AccountStatus.ACTIVE
    metadata: dict[str, Any] = field(default_factory=dict)
    balances: Balances = field(default_factory=Balances)
    # The book (docs/ledger.md "Books"): live money or test money, part of the account's identity. A transfer
    # never mixes books, so test payments can never move a live balance (docs/architecture.md §4, "Test and live
    # never mix").
    livemode: bool = True

    def __post_init__(self) -> None:
        check_currency(self.currency)
        if not 0 <= self.credit_limit_minor <= MAX_AMOUNT_MINOR:
            raise LedgerError(errors.VALIDATION_FAILED, "credit_limit_minor must be in 0..2^63-1")
        if self.credit_limit_minor and not (
            self.flags.debits_must_not_exceed_credits or self.flags.credits_must_not_exceed_debits
        ):
            raise LedgerError(
                errors.VALIDATION_FAILED, "credit_limit_minor only applies to an account with a balance flag"
            )

    def copy(self) -> Account:
        """A copy with its own balances; skips __post_init__ (the original was already checked)."""
        new = object.__new__(Account)
        for name in _ACCOUNT_FIELDS:
            setattr(new, name, getattr(self, name))
        new.balances = self.balances.copy()
        return new

    # --- named state changes (compare-and-set in the store) ------------------------------------------
    def freeze(self) -> bool:
        """Returns whether anything changed; freezing a frozen account is a no-op, a closed one an error."""
        if self.status is AccountStatus.CLOSED:
            raise LedgerError(errors.ACCOUNT_CLOSED, f"account {self.id} is closed")
        changed = self.status is AccountStatus.ACTIVE
        self.status = AccountStatus.FROZEN
        return changed

    def unfreeze(self) -> bool:
        if self.status is AccountStatus.CLOSED:
            raise LedgerError(errors.ACCOUNT_CLOSED, f"account {self.id} is closed")
        changed = self.status is AccountStatus.FROZEN
        self.status = AccountStatus.ACTIVE
        return changed

    def close(self) -> bool:
        """Closing hides an account forever, so it must hold nothing: zero posted balance, nothing pending."""
        if self.status is AccountStatus.CLOSED:
            return False
        b = self.balances
        if b.debits_posted != b.credits_posted or b.debits_pending or b.credits_pending:
            raise LedgerError(errors.ACCOUNT_NOT_EMPTY, f"account {self.id} still holds a balance")
        self.status = AccountStatus.CLOSED
        return True


_ACCOUNT_FIELDS = tuple(f.name for f in fields(Account) if f.name != "balances")


# --- derived figures -----------------------------------------------------------------------------------
def posted_balance(normal: NormalBalance, b: Balances) -> int:
    """Signed balance on the account's normal side (credit-normal: credits - debits)."""
    if normal is NormalBalance.CREDIT:
        return b.credits_posted - b.debits_posted
    return b.debits_posted - b.credits_posted


def available_balance(normal: NormalBalance, b: Balances) -> int:
    """Posted balance minus outgoing reservations; incoming pending amounts are not spendable yet."""
    if normal is NormalBalance.CREDIT:
        return b.credits_posted - b.debits_posted - b.debits_pending
    return b.debits_posted - b.credits_posted - b.credits_pending


def limit_violation(account: Account, b: Balances) -> ErrorSpec | None:
    """Checks the counters `b` (already including the new amounts) against the account's flags.

    Same rule as TigerBeetle: pending debits count against the limit, pending credits do not help.
    """
    for value in b.as_tuple():
        if value > MAX_AMOUNT_MINOR:
            return errors.BALANCE_OVERFLOW
    flags = account.flags
    if flags.debits_must_not_exceed_credits and (
        b.debits_posted + b.debits_pending > b.credits_posted + account.credit_limit_minor
    ):
        return errors.INSUFFICIENT_FUNDS
    if flags.credits_must_not_exceed_debits and (
        b.credits_posted + b.credits_pending > b.debits_posted + account.credit_limit_minor
    ):
        return errors.CREDITS_EXCEED_DEBITS
    return None
