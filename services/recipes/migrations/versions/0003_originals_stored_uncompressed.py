"""originals are stored without compression

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 13:15:00.000000

JPEG, PNG, WebP and GIF are compressed already: PostgreSQL's default storage tried pglz on every
upload (~40 ms of server CPU for a 3.5 MB photo), failed, and stored the bytes as they were.
EXTERNAL keeps them out of line without trying. Only metadata changes; no rewrite.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE recipe_images ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.execute("ALTER TABLE recipe_images ALTER COLUMN data SET STORAGE EXTENDED")
