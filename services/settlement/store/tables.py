"""Tables of the settlement database (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Identity, MetaData, Table, Text, func

from libs.common.outbox_tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)

# Settlement's own copy of the ledger accounts it may pay into or out of, built from
# `account.opened` events (a service never reads another service's tables).
ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("account_id", Text, primary_key=True),
    Column("holder_id", Text, nullable=False, index=True),
    Column("currency", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("source_event_id", Text, nullable=False),
    # Counts applications of the event: the exactly-once tests assert it stays at 1.
    Column("applied_count", BigInteger, nullable=False, server_default="1"),
    Column("mirrored_seq", BigInteger, Identity(always=True), nullable=False),
    Column("mirrored_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
