"""Rows ⇄ domain objects. One place, so the write path, the reads and verify agree on the shapes."""

from __future__ import annotations

import json
from typing import Any

from services.ledger.domain.accounts import (
    Account,
    AccountFlags,
    AccountStatus,
    Balances,
    NormalBalance,
)
from services.ledger.domain.transfers import DIRECTIONS, Transfer, TransferPosting, TransferStatus

ACCOUNT_COLUMNS = (
    "id, holder_id, currency, kind, code, status, metadata, normal_balance, debits_must_not_exceed_credits,"
    " credits_must_not_exceed_debits, credit_limit_minor, debits_posted, credits_posted, debits_pending,"
    " credits_pending, created_at, livemode"
)
# What the write path needs of an account (no holder, kind, code, metadata: less to send and decode).
WRITE_ACCOUNT_COLUMNS = (
    "id, currency, status, normal_balance, debits_must_not_exceed_credits, credits_must_not_exceed_debits,"
    " credit_limit_minor, debits_posted, credits_posted, debits_pending, credits_pending, livemode"
)
TRANSFER_COLUMNS = (
    "id, source, idempotency_key, body_hash, status, pending, postings, reference, corrects_transfer_id,"
    " metadata, created_at, timeout_at, finalized_at"
)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


_FLAGS = {(d, c): AccountFlags(d, c) for d in (False, True) for c in (False, True) if not (d and c)}
_STATUSES = {s.value: s for s in AccountStatus}
_NORMALS = {n.value: n for n in NormalBalance}


def account_from_row(row: Any, *, metadata: bool = True) -> Account:
    """`row`: an asyncpg Record or a SQLAlchemy RowMapping (both index by column name).

    Rows were validated when the account was opened, so this skips `Account.__post_init__` and the enum
    constructors (the write path decodes every touched account of every batch). The write path passes
    `metadata=False` with a WRITE_ACCOUNT_COLUMNS row (no holder, kind, code or metadata).
    """
    account = object.__new__(Account)
    account.id = row["id"]
    account.currency = row["currency"]
    if metadata:
        account.holder_id = row["holder_id"]
        account.kind = row["kind"]
        account.code = row["code"]
    else:  # a WRITE_ACCOUNT_COLUMNS row
        account.holder_id = account.kind = account.code = ""
    account.normal_balance = _NORMALS[row["normal_balance"]]
    account.flags = _FLAGS[(row["debits_must_not_exceed_credits"], row["credits_must_not_exceed_debits"])]
    account.credit_limit_minor = row["credit_limit_minor"]
    account.status = _STATUSES[row["status"]]
    account.metadata = _json(row["metadata"]) if metadata else {}
    account.balances = Balances(
        row["debits_posted"], row["credits_posted"], row["debits_pending"], row["credits_pending"]
    )
    account.livemode = row["livemode"]  # the book: every read selects it (ACCOUNT_COLUMNS, WRITE_ACCOUNT_COLUMNS)
    return account


def postings_to_json(postings: list[TransferPosting]) -> str:
    return json.dumps(
        [
            {
                "account_id": p.account_id,
                "direction": str(p.direction),
                "amount_minor": p.amount_minor,
                "posted_amount_minor": p.posted_amount_minor,
                "currency": p.currency,
            }
            for p in postings
        ],
        separators=(",", ":"),
    )


def transfer_from_row(row: Any) -> Transfer:
    return Transfer(
        id=row["id"],
        source=row["source"],
        idempotency_key=row["idempotency_key"],
        body_hash=row["body_hash"],
        status=TransferStatus(row["status"]),
        postings=[
            TransferPosting(
                p["account_id"],
                DIRECTIONS[p["direction"]],
                int(p["amount_minor"]),
                p["currency"],
                int(p["posted_amount_minor"]),
            )
            for p in _json(row["postings"])
        ],
        pending=row["pending"],
        created_at=row["created_at"],
        timeout_at=row["timeout_at"],
        reference=row["reference"],
        corrects_transfer_id=row["corrects_transfer_id"],
        metadata=_json(row["metadata"]),
        finalized_at=row["finalized_at"],
    )
