"""the recipe count kept in shards, so the unfiltered list does not count the table

Revision ID: 0007_recipe_count
Revises: outbox_quarantine
Create Date: 2026-12-07 07:00:00.000000

``count(*)`` over ``recipes`` reads every row (index-only at best): at 10,000 recipes it was
most of PostgreSQL's CPU per list request, and it grows with the catalogue. Statement-level
triggers with transition tables add what each statement inserted or deleted to one of
``COUNT_SHARDS`` rows (chosen by transaction, as the list version's shards are, so concurrent
writers rarely share a row lock); the unfiltered list reads their sum in the page's snapshot.
Filtered lists still count their matches.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_recipe_count"
down_revision: str | None = "outbox_quarantine"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Counter rows of the recipe count: one transaction moves one, chosen by its transaction id.
COUNT_SHARDS = 16


def _count_function(name: str, transition: str, sign: str) -> str:
    # HAVING: a statement that touched no row (a DELETE matching nothing) moves nothing.
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO recipe_count_shards AS c (shard, recipes)
    SELECT txid_current() % {COUNT_SHARDS}, {sign}count(*) FROM {transition} HAVING count(*) > 0
    ON CONFLICT (shard) DO UPDATE SET recipes = c.recipes + EXCLUDED.recipes;
    RETURN NULL;
END
$$
"""


RESET_FUNCTION = """
CREATE FUNCTION reset_recipe_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM recipe_count_shards;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "recipe_count_shards",
        sa.Column("shard", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("recipes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("shard"),
    )
    # No write may slip between the first count and the triggers that follow it.
    op.execute("LOCK TABLE recipes IN SHARE ROW EXCLUSIVE MODE")
    op.execute(_count_function("count_added_recipes", "added", ""))
    op.execute(_count_function("count_removed_recipes", "removed", "-"))
    op.execute(RESET_FUNCTION)
    op.execute(
        "CREATE TRIGGER recipes_count_added AFTER INSERT ON recipes"
        " REFERENCING NEW TABLE AS added"
        " FOR EACH STATEMENT EXECUTE FUNCTION count_added_recipes()"
    )
    op.execute(
        "CREATE TRIGGER recipes_count_removed AFTER DELETE ON recipes"
        " REFERENCING OLD TABLE AS removed"
        " FOR EACH STATEMENT EXECUTE FUNCTION count_removed_recipes()"
    )
    op.execute(
        "CREATE TRIGGER recipes_count_reset AFTER TRUNCATE ON recipes"
        " FOR EACH STATEMENT EXECUTE FUNCTION reset_recipe_count()"
    )
    op.execute("INSERT INTO recipe_count_shards (shard, recipes) SELECT 0, count(*) FROM recipes")


def downgrade() -> None:
    for trigger in ("recipes_count_added", "recipes_count_removed", "recipes_count_reset"):
        op.execute(f"DROP TRIGGER {trigger} ON recipes")
    for function in ("count_added_recipes", "count_removed_recipes", "reset_recipe_count"):
        op.execute(f"DROP FUNCTION {function}()")
    op.drop_table("recipe_count_shards")
