"""The `outbox`, `inbox` and `inbox_dead_letter` tables every service database has.

Each service's metadata includes them via `add_messaging_tables(metadata)`, and its first migration
creates them with `libs.common.migrations.create_messaging_tables()`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    func,
    text,
)

# Fixed forever: a key's shard must never change, or per-aggregate order could break.
OUTBOX_SHARD_COUNT = 16
NOTIFY_CHANNEL = "juhe_outbox"

_messaging = MetaData()


def _outbox(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("seq", BigInteger, Identity(always=True), primary_key=True),
        Column("event_id", Text, nullable=False, unique=True),
        Column("topic", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("shard", SmallInteger, nullable=False),
        Column("event_type", Text, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        # The broker instance the row was published to; a new broker means "publish again".
        Column("broker_epoch", Text),
        Index("outbox_unpublished", "shard", "seq", postgresql_where=text("published_at IS NULL")),
        Index("outbox_published_at", "published_at", postgresql_where=text("published_at IS NOT NULL")),
    )


# The consumer of inbox rows written before rows named their consumer (migration "inbox by consumer"): such
# a row counts as seen by every consumer of the database (the old rule), until retention deletes it.
LEGACY_INBOX_CONSUMER = ""


def _inbox(metadata: MetaData) -> Table:
    """One row per (consumer, event) applied: each consumer (its group name, without the topic namespace)
    applies an event once, and two consumers of one service never skip each other's events."""
    return Table(
        "inbox",
        metadata,
        Column("consumer", Text, primary_key=True),
        Column("event_id", Text, primary_key=True),
        Column("topic", Text, nullable=False),
        Column("event_type", Text, nullable=False),
        Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Index("inbox_received_at", "received_at"),
    )


def _dead_letter(metadata: MetaData) -> Table:
    return Table(
        "inbox_dead_letter",
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("consumer", Text),  # the consumer that parked it (NULL: parked before consumers were named)
        Column("event_id", Text),
        Column("topic", Text, nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", BigInteger, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("error", Text, nullable=False),
        Column("failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


outbox = _outbox(_messaging)
inbox = _inbox(_messaging)
inbox_dead_letter = _dead_letter(_messaging)


def add_messaging_tables(metadata: MetaData) -> None:
    """Put the messaging tables into a service's metadata (for its Alembic env and its tests)."""
    _outbox(metadata)
    _inbox(metadata)
    _dead_letter(metadata)


NOTIFY_TRIGGER_SQL = (
    f"""
CREATE OR REPLACE FUNCTION juhe_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
  RETURN NULL;
END $$;
""",
    """
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
FOR EACH STATEMENT EXECUTE FUNCTION juhe_outbox_notify();
""",
)
