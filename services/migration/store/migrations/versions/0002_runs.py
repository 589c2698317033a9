"""Migration runs, their files with the checkpoint, and one record per source row (report and id map).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


STATEMENTS = """
CREATE TABLE migration_runs (
  id text PRIMARY KEY,
  platform text NOT NULL,
  mode text NOT NULL CHECK (mode IN ('dry_run', 'real')),
  status text NOT NULL CHECK (status IN ('running', 'completed', 'finalised', 'reversing', 'reversed')),
  fingerprint text NOT NULL,
  control jsonb,
  controls_posted boolean NOT NULL DEFAULT false,
  report jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  finalised_at timestamptz
);
CREATE INDEX migration_runs_fingerprint ON migration_runs (platform, fingerprint);
CREATE TABLE migration_run_files (
  run_id text NOT NULL REFERENCES migration_runs (id),
  kind text NOT NULL CHECK (kind IN ('merchants', 'persons', 'balances')),
  path text NOT NULL,
  format text NOT NULL,
  encoding text NOT NULL,
  sha256 text NOT NULL,
  records bigint NOT NULL,
  records_done bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (run_id, kind)
);
CREATE TABLE migration_run_rows (
  run_id text NOT NULL REFERENCES migration_runs (id),
  kind text NOT NULL,
  record_no bigint NOT NULL,
  platform text NOT NULL,
  source_id text,
  status text NOT NULL CHECK (status IN ('valid', 'written', 'skipped', 'rejected', 'reversed')),
  reason text,
  detail text,
  juhe_id text,
  holder_id text,
  document_digest text,
  currency text,
  amount_minor bigint,
  details jsonb,
  live boolean NOT NULL DEFAULT false,
  kyc_level int,
  PRIMARY KEY (run_id, kind, record_no)
);
CREATE INDEX migration_rows_source ON migration_run_rows (run_id, kind, source_id);
CREATE INDEX migration_rows_document ON migration_run_rows (run_id, kind, document_digest);
CREATE UNIQUE INDEX migration_rows_live ON migration_run_rows (platform, kind, source_id) WHERE live
"""


def upgrade() -> None:
    for statement in STATEMENTS.split(";\n"):
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
