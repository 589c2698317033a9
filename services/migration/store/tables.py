"""Tables of the migration database (SQLAlchemy Core): runs, their files (with the checkpoint), and one
record per source row — the run's report, the rejected rows with their reason, and the id map.

The id map is `run_rows` where `live`: a partial unique index keeps one live Juhe holder or opening per
(platform, kind, source id) across all runs, so a second run of the same file skips every row instead of
migrating it twice; a reversal sets `live` false, which frees the source ids for a corrected run.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, Integer, MetaData, Table, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.outbox_tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)

runs = Table(
    "migration_runs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("platform", Text, nullable=False),
    Column("mode", Text, nullable=False),  # dry_run | real
    Column("status", Text, nullable=False),  # running | completed | finalised | reversing | reversed
    Column("fingerprint", Text, nullable=False),  # sha256 over the files' digests and the mode
    Column("control", JSONB),
    Column("controls_posted", Boolean, nullable=False, server_default=text("false")),
    Column("report", JSONB),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finalised_at", DateTime(timezone=True)),
)

run_files = Table(
    "migration_run_files",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("path", Text, nullable=False),
    Column("format", Text, nullable=False),
    Column("encoding", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("records", BigInteger, nullable=False),
    Column("records_done", BigInteger, nullable=False, server_default="0"),  # the checkpoint
)

run_rows = Table(
    "migration_run_rows",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("record_no", BigInteger, primary_key=True),
    Column("platform", Text, nullable=False),
    Column("source_id", Text),
    Column("status", Text, nullable=False),  # valid (dry run) | written | skipped | rejected | reversed
    Column("reason", Text),
    Column("detail", Text),
    Column("juhe_id", Text),  # holder id, or the opening's transfer id
    Column("holder_id", Text),  # balances: the person's holder
    Column("document_digest", Text),
    Column("currency", Text),
    Column("amount_minor", BigInteger),
    Column("details", JSONB),  # merchants: channel sub-merchant ids, industry
    Column("live", Boolean, nullable=False, server_default=text("false")),
    Column("kyc_level", Integer),
    Index("migration_rows_source", "run_id", "kind", "source_id"),
    Index("migration_rows_document", "run_id", "kind", "document_digest"),
    Index("migration_rows_live", "platform", "kind", "source_id", unique=True, postgresql_where=text("live")),
)
