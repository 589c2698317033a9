"""Tables of the ledger database (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, Table, Text, func
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
)
