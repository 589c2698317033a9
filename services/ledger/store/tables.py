"""Tables of the ledger database (SQLAlchemy Core).

Money columns are bigint minor units. Account counters are the TigerBeetle four; entries keep the four
counters *after* each movement so statements and balance-as-of are single indexed reads. There are no
foreign keys from entries to accounts/transfers on purpose: the write path inserts tens of thousands of
entries per second with COPY while already holding the account locks; referential integrity is checked by
`python -m services.ledger.verify` instead.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.outbox_tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("holder_id", Text, nullable=False, index=True),
    Column("currency", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("code", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="active"),
    Column("metadata", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("normal_balance", Text, nullable=False, server_default="credit"),
    Column("debits_must_not_exceed_credits", Boolean, nullable=False, server_default=text("false")),
    Column("credits_must_not_exceed_debits", Boolean, nullable=False, server_default=text("false")),
    Column("credit_limit_minor", BigInteger, nullable=False, server_default="0"),
    Column("debits_posted", BigInteger, nullable=False, server_default="0"),
    Column("credits_posted", BigInteger, nullable=False, server_default="0"),
    Column("debits_pending", BigInteger, nullable=False, server_default="0"),
    Column("credits_pending", BigInteger, nullable=False, server_default="0"),
    Column("idempotency_key", Text),
    Column("body_hash", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The book (migration 0009): live or test money. Part of the identity: a chart key such as
    # `chart:merchant_pending:<mch>:CNY` names one account per book.
    Column("livemode", Boolean, nullable=False, server_default=text("true")),
    UniqueConstraint("idempotency_key", "livemode", name="accounts_idempotency_key_livemode"),
    CheckConstraint(
        "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 AND credits_pending >= 0",
        name="accounts_counters_non_negative",
    ),
    CheckConstraint("status IN ('active', 'frozen', 'closed')", name="accounts_status_known"),
    Index("accounts_holder_id_id", "holder_id", "id"),
    postgresql_with={"fillfactor": 70},  # HOT updates of the counters (migration 0004)
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", Text, primary_key=True),
    Column("source", Text, nullable=False),
    Column("idempotency_key", Text, nullable=False),
    Column("body_hash", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("pending", Boolean, nullable=False),
    # [{account_id, direction, amount_minor, posted_amount_minor, currency}]: one transfer = one row.
    Column("postings", JSONB, nullable=False),
    Column("reference", Text),
    Column("corrects_transfer_id", Text),
    Column("metadata", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("timeout_at", DateTime(timezone=True)),
    Column("finalized_at", DateTime(timezone=True)),
    UniqueConstraint("source", "idempotency_key", name="transfers_source_idempotency_key"),
    CheckConstraint("status IN ('pending', 'posted', 'voided', 'expired')", name="transfers_status_known"),
    Index(
        "transfers_pending_timeout",
        "timeout_at",
        postgresql_where=text("status = 'pending' AND timeout_at IS NOT NULL"),
    ),
)

entries = Table(
    "entries",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("transfer_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("direction", Text, nullable=False),
    Column("posted_delta_minor", BigInteger, nullable=False),
    Column("pending_delta_minor", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("debits_posted", BigInteger, nullable=False),
    Column("credits_posted", BigInteger, nullable=False),
    Column("debits_pending", BigInteger, nullable=False),
    Column("credits_pending", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("entries_account_id_created_at", "account_id", "created_at", "id"),
)
