"""outbox quarantine and inbox age index

Revision ID: outbox_quarantine
Revises: 0001
Create Date: 2026-12-07 00:50:00.000000

Rows the outbox relay cannot publish move to ``outbox_quarantine`` (issue 15); the inbox is
pruned by age. The same step in every service: ``servicekit._migrations``.
"""

from collections.abc import Sequence

from servicekit import create_outbox_quarantine, drop_outbox_quarantine

revision: str = "outbox_quarantine"
down_revision: str | None = "0002_email_optional"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_outbox_quarantine()


def downgrade() -> None:
    drop_outbox_quarantine()
