"""The account shapes: the payload of every account.* event (`AccountResponse`, the API's own answer) and the
opening body whose hash binds an opening key (`AccountCreateRequest.body_hash`).

Why here and not in api/schemas.py: the API, the consumer of cashier events and the wallet store all open
accounts and publish account.opened; an events payload module is shared by every layer (CONTRIBUTING §2),
so none of them imports the API to do it. `api/schemas.py` re-exports these names.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from libs.common.ids import new_id
from libs.common.money import AmountMinorOrZero, Currency
from services.ledger.domain import chart, errors
from services.ledger.domain.accounts import (
    Account,
    AccountFlags,
    Balances,
    NormalBalance,
    available_balance,
    posted_balance,
)
from services.ledger.domain.errors import LedgerError


class AccountFlagsSchema(BaseModel):
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False


NOT_HASHED: set[str] = {"idempotency_key", "livemode"}
"""What identifies an opening (the key, within its book) rather than being the body the key is bound to."""


class AccountCreateRequest(BaseModel):
    holder_id: str = Field(min_length=1, max_length=64, examples=["mch_demo"])
    currency: Currency
    kind: str = Field(min_length=1, max_length=32, examples=["merchant_pending"])
    code: str | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        examples=["2201"],
        description="The chart-of-accounts code. Left out for a kind of the chart (docs/ledger.md §2): derived from "
        "`kind`; a code sent with such a kind must be the chart's (else 422 `chart_code_mismatch`). Required for a "
        "kind outside the chart (else 422 `account_code_required`).",
    )
    normal_balance: Literal["debit", "credit"] | None = Field(
        default=None, description="Defaults from the chart, else from the code: 1xxx/5xxx debit, else credit"
    )
    flags: AccountFlagsSchema = Field(default_factory=AccountFlagsSchema)
    credit_limit_minor: AmountMinorOrZero = 0
    metadata: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    livemode: bool | None = Field(
        default=None,
        description='The book (docs/ledger.md "Books"): live (true) or test (false) money; default: the mode of the '
        "caller's key, live for a caller without one. Part of the account's identity, like the key.",
    )

    def body_hash(self) -> str:
        """What an opening key is bound to: the same key with another body is refused. One definition for
        every opener (the API, the consumer of cashier events, the wallet), so a chart account opened by one
        is found, not refused, by the others. Hashed with its code filled in (flows/accounts.py:charted), so a
        body naming the kind alone and one naming kind and code bind the same key alike."""
        # The book is part of the account's identity (with the key), not of its body: left out, so every account
        # opened before books existed keeps its hash.
        body = self.model_dump(mode="json", exclude=NOT_HASHED)
        body["code"] = self.chart_code()
        canonical = json.dumps(body, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def chart_code(self) -> str:
        """The account's code: the chart's for a kind of the chart (a code sent with it must agree), else the one
        sent. Other services open chart accounts by kind alone (docs/ledger.md §2), so no number is copied."""
        entry = chart.by_kind(self.kind)
        if entry is None:
            if self.code is None:
                raise LedgerError(
                    errors.ACCOUNT_CODE_REQUIRED, f"kind {self.kind!r} is outside the chart: name its code"
                )
            return self.code
        if self.code is not None and self.code != entry.code:
            raise LedgerError(
                errors.CHART_CODE_MISMATCH,
                f"kind {self.kind!r} has code {entry.code} in the chart, not {self.code!r}",
                kind=self.kind,
                chart_code=entry.code,
            )
        return entry.code

    def to_account(self, *, metadata: dict[str, Any] | None = None) -> Account:
        """The new account this body opens, checked by the domain (flags, limit, currency) before anything is
        written. A body without a book is live (the API fills in the caller's key mode before this). `metadata`:
        what the row keeps when it is not the body's (a wallet sub-account notes its type on its row while its
        chart key stays bound to the chart's documented body)."""
        code = self.chart_code()
        return Account(
            id=new_id("acc"),
            holder_id=self.holder_id,
            currency=self.currency,
            kind=self.kind,
            code=code,
            normal_balance=NormalBalance(self.normal_balance) if self.normal_balance else NormalBalance.for_code(code),
            flags=AccountFlags(self.flags.debits_must_not_exceed_credits, self.flags.credits_must_not_exceed_debits),
            credit_limit_minor=self.credit_limit_minor,
            metadata=self.metadata if metadata is None else metadata,
            livemode=self.livemode is not False,
        )


class BalancesSchema(BaseModel):
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    posted_balance_minor: int
    available_balance_minor: int


class AccountResponse(BaseModel):
    id: str
    holder_id: str
    currency: str
    kind: str
    code: str
    normal_balance: str
    flags: AccountFlagsSchema
    credit_limit_minor: int
    status: str
    metadata: dict[str, Any]
    balances: BalancesSchema
    created_at: datetime
    livemode: bool = Field(description="The book: live money (true) or test money (false)")

    @classmethod
    def of(cls, account: Account, created_at: datetime) -> AccountResponse:
        b = account.balances
        return cls(
            id=account.id,
            holder_id=account.holder_id,
            currency=account.currency,
            kind=account.kind,
            code=account.code,
            normal_balance=account.normal_balance.value,
            flags=AccountFlagsSchema(
                debits_must_not_exceed_credits=account.flags.debits_must_not_exceed_credits,
                credits_must_not_exceed_debits=account.flags.credits_must_not_exceed_debits,
            ),
            credit_limit_minor=account.credit_limit_minor,
            status=account.status.value,
            metadata=account.metadata,
            balances=balances_schema(account, b.as_tuple()),
            created_at=created_at,
            livemode=account.livemode,
        )


def balances_schema(account: Account, counters: tuple[int, int, int, int]) -> BalancesSchema:
    b = Balances(*counters)
    return BalancesSchema(
        debits_posted=b.debits_posted,
        credits_posted=b.credits_posted,
        debits_pending=b.debits_pending,
        credits_pending=b.credits_pending,
        posted_balance_minor=posted_balance(account.normal_balance, b),
        available_balance_minor=available_balance(account.normal_balance, b),
    )
