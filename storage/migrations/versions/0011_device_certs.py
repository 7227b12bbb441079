"""device certificates: a staff device key is a reader only with a certificate the pages
can check against the team's verify key (issue 15)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 10:00:00.000000

Three nullable columns on ``device_keys`` (added in place, no copy of the table): the
device's Ed25519 signing key, and its certificate's issuer and signature. Staff keys that
were approved by the old chat button have no certificate: they go back to ``pending`` and
receive nothing until an admin's phone approves them again (README, "Upgrading"). Members'
keys stay approved: they are trusted at registration, as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("device_keys", sa.Column("signing_key", sa.LargeBinary(length=32), nullable=True))
    op.add_column("device_keys", sa.Column("cert_issuer", sa.LargeBinary(length=32), nullable=True))
    op.add_column(
        "device_keys", sa.Column("cert_signature", sa.LargeBinary(length=64), nullable=True)
    )
    op.create_index("ix_device_keys_signing_key", "device_keys", ["signing_key"], unique=True)
    op.execute(
        "UPDATE device_keys SET status = 'pending' WHERE status = 'approved' AND person_id IN "
        "(SELECT id FROM people WHERE role <> 'member')"
    )


def downgrade() -> None:
    # Keys sent back to pending by the upgrade stay pending: approving them again is an
    # admin's decision, not a migration's.
    op.drop_index("ix_device_keys_signing_key", table_name="device_keys")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+ and PostgreSQL), as in 0010.
    op.execute("ALTER TABLE device_keys DROP COLUMN cert_signature")
    op.execute("ALTER TABLE device_keys DROP COLUMN cert_issuer")
    op.execute("ALTER TABLE device_keys DROP COLUMN signing_key")
