"""ratings remember the score they replaced; a cheap version of the recipe list

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Counter rows of the list version: one transaction bumps one, chosen by its transaction id.
LIST_VERSION_SHARDS = 16

# Runs at commit (a deferred constraint trigger), so the shard's row lock lasts only as long as
# the commit itself; the shard is chosen by transaction, so one transaction bumps one shard
# however many recipes it changes. The value never goes back, even after TRUNCATE or a restore
# (it is at least the clock in microseconds), so the sum of the shards never repeats.
BUMP_FUNCTION = f"""
CREATE FUNCTION bump_recipe_list_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO recipe_list_versions AS v (shard, version)
    VALUES (
        txid_current() % {LIST_VERSION_SHARDS},
        (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
    )
    ON CONFLICT (shard) DO UPDATE SET version = greatest(v.version + 1, EXCLUDED.version);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.add_column("ratings", sa.Column("previous_score", sa.SmallInteger(), nullable=True))
    op.create_table(
        "recipe_list_versions",
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("shard"),
    )
    op.execute(BUMP_FUNCTION)
    op.execute(
        "CREATE CONSTRAINT TRIGGER recipes_bump_list_version"
        " AFTER INSERT OR UPDATE OR DELETE ON recipes"
        " DEFERRABLE INITIALLY DEFERRED"
        " FOR EACH ROW EXECUTE FUNCTION bump_recipe_list_version()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER recipes_bump_list_version ON recipes")
    op.execute("DROP FUNCTION bump_recipe_list_version()")
    op.drop_table("recipe_list_versions")
    op.drop_column("ratings", "previous_score")
