"""a live user's copy may lack an email: users may register without an address

Revision ID: 0002_user_email_optional
Revises: b5f712385d24
Create Date: 2026-12-07 00:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_user_email_optional"
down_revision: str | None = "b5f712385d24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ck_users_live_user_is_complete"
COMPLETE = (
    "deleted_at IS NOT NULL OR (username IS NOT NULL{email}"
    " AND role IS NOT NULL AND date_joined IS NOT NULL AND updated_at IS NOT NULL)"
)


def upgrade() -> None:
    op.drop_constraint(NAME, "users", type_="check")
    op.create_check_constraint(NAME, "users", COMPLETE.format(email=""))


def downgrade() -> None:
    # Fails while a live user without an address is kept: the older schema cannot hold one.
    op.drop_constraint(NAME, "users", type_="check")
    op.create_check_constraint(NAME, "users", COMPLETE.format(email=" AND email IS NOT NULL"))
