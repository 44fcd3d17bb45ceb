"""recipes.original_image: the media service's full-size copy without metadata

Revision ID: 0004_original_image
Revises: 0003
Create Date: 2026-12-07 01:00:00

Null for recipes processed before: their next image fills it (their uploads are gone).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_original_image"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("recipes", sa.Column("original_image", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("recipes", "original_image")
