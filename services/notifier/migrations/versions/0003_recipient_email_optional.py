"""recipients.email is optional: users may register without an address (they get no mail)

Revision ID: 0002_recipient_email_optional
Revises: 596b92c2d55c
Create Date: 2026-12-07 00:45:00
"""

from collections.abc import Sequence

import sqlmodel
from alembic import op

revision: str = "0002_recipient_email_optional"
down_revision: str | None = "0002_revoked_users"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EMAIL = sqlmodel.sql.sqltypes.AutoString(length=320)


def upgrade() -> None:
    op.alter_column("recipients", "email", existing_type=EMAIL, nullable=True)


def downgrade() -> None:
    # The older schema wrote "" for "no address" (tombstones): keep those users that way.
    op.execute("UPDATE recipients SET email = '' WHERE email IS NULL")
    op.alter_column("recipients", "email", existing_type=EMAIL, nullable=False)
