"""Alembic glue shared by every service: each service's ``migrations/env.py`` calls it."""

from pathlib import Path

import psycopg
import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from psycopg import sql
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.pool import NullPool

# The kit's tables (outbox, inbox, quarantine, scheduled ticks) join SQLModel's metadata here,
# so a service's env.py, which calls run_alembic_env, need not import them itself.
import servicekit._tables  # noqa: F401
from servicekit._db import libpq_url

#: The advisory lock migrations of one database take (any constant; one database per service).
MIGRATION_LOCK_KEY = 0x6D696772  # "migr"


def run_alembic_env(metadata: MetaData, database_url: str) -> None:
    """Body of a service's ``env.py``: offline or online migrations against ``database_url``."""
    url = context.config.get_main_option("sqlalchemy.url") or database_url
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as connection:
        # Replicas starting together (init containers of a rollout) would otherwise create the
        # same tables at once and all but one fail; the others wait and find nothing to do.
        # A session lock: it outlives the commit below and ends with the connection.
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def upgrade_database(service_dir: Path, database_url: str, revision: str = "head") -> None:
    """Run a service's migrations programmatically (tests, ``make up``)."""
    config = Config(str(service_dir / "alembic.ini"))
    config.set_main_option("script_location", str(service_dir / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url)
    command.upgrade(config, revision)


def ensure_database(database_url: str) -> bool:
    """Create the database named in ``database_url`` if missing; True when it was created.

    Exits with one line, not a traceback, when the server cannot be reached: that is an outage
    or a wrong URL, and ``make up`` prints each service's last lines of ``migrate``.
    """
    target = libpq_url(database_url)
    name = psycopg.conninfo.conninfo_to_dict(target)["dbname"]
    admin = psycopg.conninfo.make_conninfo(target, dbname="postgres")
    try:
        connection = psycopg.connect(admin, autocommit=True)
    except psycopg.OperationalError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SystemExit(f"migrate: cannot reach PostgreSQL: {reason}") from None
    with connection as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(name))))
        return True


# Steps of the messaging tables (``servicekit._tables``) that every service's migrations take.
# Each is called from one migration per service; a database that ran it keeps what it did, so
# never change a step: add a new one.


def create_outbox_quarantine() -> None:
    """Issue 15: ``outbox_quarantine`` for unpublishable rows; the inbox indexed by age."""
    op.create_table(
        "outbox_quarantine",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("routing_key", sa.String(length=200), nullable=False),
        sa.Column("envelope", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "quarantined_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index("ix_inbox_messages_handled_at", "inbox_messages", ["handled_at"])


def drop_outbox_quarantine() -> None:
    op.drop_index("ix_inbox_messages_handled_at", table_name="inbox_messages")
    op.drop_table("outbox_quarantine")
