"""Payment links (收款链接, printed as 码牌): a merchant's reusable or limited link that opens a fresh checkout
session for each payer, and the session's link.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE payment_links (
            id VARCHAR(41) PRIMARY KEY,
            merchant_id VARCHAR(64) NOT NULL,
            slug VARCHAR(64) NOT NULL,
            status VARCHAR(16) NOT NULL DEFAULT 'active',
            amount_minor BIGINT,
            amount_min_minor BIGINT NOT NULL,
            amount_max_minor BIGINT NOT NULL,
            currency VARCHAR(3) NOT NULL,
            description TEXT NOT NULL,
            payer_fields JSONB NOT NULL DEFAULT '[]'::jsonb,
            allowed_methods JSONB,
            return_url TEXT,
            max_uses INTEGER,
            expires_at TIMESTAMPTZ,
            metadata JSONB NOT NULL DEFAULT '{}'::jsonb,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            deactivated_at TIMESTAMPTZ,
            CONSTRAINT uq_payment_links_slug UNIQUE (slug),
            CONSTRAINT ck_payment_links_status CHECK (status IN ('active', 'deactivated')),
            CONSTRAINT ck_payment_links_amounts CHECK (
                1 <= amount_min_minor AND amount_min_minor <= amount_max_minor
                AND (amount_minor IS NULL OR (amount_minor = amount_min_minor AND amount_minor = amount_max_minor))
            ),
            CONSTRAINT ck_payment_links_max_uses CHECK (max_uses IS NULL OR max_uses > 0)
        )
        """
    )
    op.execute("CREATE INDEX ix_payment_links_merchant ON payment_links (merchant_id, id)")
    op.execute("ALTER TABLE checkout_sessions ADD COLUMN payment_link_id VARCHAR(41)")
    op.execute(
        "CREATE INDEX ix_checkout_sessions_payment_link ON checkout_sessions (payment_link_id) "
        "WHERE payment_link_id IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_checkout_sessions_payment_link")
    op.execute("ALTER TABLE checkout_sessions DROP COLUMN payment_link_id")
    op.execute("DROP TABLE payment_links")
