"""users.email is optional, as in the original API (a user may register without one)

Revision ID: 0002_email_optional
Revises: 0001
Create Date: 2026-12-07 00:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_email_optional"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("users", "email", existing_type=sa.String(length=254), nullable=True)


def downgrade() -> None:
    # Fails while users without an address exist: the older schema cannot hold them, and
    # deleting them here would bypass user.deleted.
    op.alter_column("users", "email", existing_type=sa.String(length=254), nullable=False)
