"""The health version: one counter bumped by every transaction that changes the shared health state.

A decision reads `config_version` and `health_version` in its one statement and the rest of its snapshot only
when either moved since the snapshot its process holds (services/routing/store/snapshot.py). The counter is
bumped by a deferred constraint trigger on `route_health`, `route_health_buckets` and `route_daily_volume`, so
no writer can forget it and it commits with the change: a decision that sees the old version sees the old state.
Deferred to the commit, once per transaction: a batch of outcomes locks its routes' rows one by one and takes the
counter's row lock last, so two batches never wait for each other in opposite orders.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

HEALTH_TABLES = ("route_health", "route_health_buckets", "route_daily_volume")

STATEMENTS = (
    """
    CREATE TABLE route_health_version (
        id smallint PRIMARY KEY CONSTRAINT route_health_version_single_row CHECK (id = 1),
        health_version bigint NOT NULL,
        changed_xact bigint
    )
    """,
    "INSERT INTO route_health_version (id, health_version) VALUES (1, 1)",
    # Once per transaction: the first call bumps and records the transaction, the later ones find it recorded.
    """
    CREATE FUNCTION route_health_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE route_health_version
           SET health_version = health_version + 1, changed_xact = pg_current_xact_id()::text::bigint
         WHERE id = 1 AND changed_xact IS DISTINCT FROM pg_current_xact_id()::text::bigint;
        RETURN NULL;
    END
    $$
    """,
    *(
        f"""
        CREATE CONSTRAINT TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE ON {table}
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION route_health_changed()
        """
        for table in HEALTH_TABLES
    ),
    *(
        f"CREATE TRIGGER {table}_truncated AFTER TRUNCATE ON {table} FOR EACH STATEMENT "
        "EXECUTE FUNCTION route_health_changed()"
        for table in HEALTH_TABLES
    ),
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
