"""The origins a merchant embeds the hosted checkout on (`juhe.js`): the checkout page's
`Content-Security-Policy: frame-ancestors` lists exactly these, and its postMessage results go only to one of them.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE merchants ADD COLUMN checkout_origins JSONB NOT NULL DEFAULT '[]'::jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE merchants DROP COLUMN checkout_origins")
