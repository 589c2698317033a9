"""A wallet's chart sub-accounts are bound to the chart's documented opening body.

Why: a merchant or person holder's chart sub-accounts (`chart:merchant_pending:<mch>:CNY`, 2202, 2203, the user's 2301)
were opened by the wallet with the hash of a body whose metadata named the sub-account (`{"wallet_subaccount": …}`). The
cashier's wallet connector and the ledger's consumer open the same key with the chart's documented body (`metadata:
{}`), so they were refused with 409 `idempotency_key_reused`: every live wallet payment to a merchant onboarded with a
wallet holder failed. The wallet now stores the documented body's hash (`services/ledger/wallet/store/wallet.py:
open_subaccount`); this rewrites the hashes stored before. The hash is computed here as `AccountCreateRequest.body_hash`
computed it when this was written (frozen: sorted JSON, SHA-256).

Revision ID: 0010
Revises: 0009
"""

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _documented_body_hash(row: sa.RowMapping) -> str:
    body = {
        "holder_id": row["holder_id"],
        "currency": row["currency"],
        "kind": row["kind"],
        "code": row["code"],
        "normal_balance": None,
        "flags": {
            "debits_must_not_exceed_credits": row["debits_must_not_exceed_credits"],
            "credits_must_not_exceed_debits": row["credits_must_not_exceed_debits"],
        },
        "credit_limit_minor": row["credit_limit_minor"],
        "metadata": {},
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            """SELECT id, holder_id, currency, kind, code, debits_must_not_exceed_credits,
                      credits_must_not_exceed_debits, credit_limit_minor
                 FROM accounts WHERE idempotency_key LIKE 'chart:%' AND metadata ? 'wallet_subaccount'"""
        )
    ).mappings()
    for row in list(rows):
        conn.execute(
            sa.text("UPDATE accounts SET body_hash = :h WHERE id = :id"),
            {"h": _documented_body_hash(row), "id": row["id"]},
        )


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
