"""Alembic environment of the backup service."""

from sqlmodel import SQLModel

import backup.models  # noqa: F401  (registers the service's tables)
import servicekit.tables  # noqa: F401  (outbox, inbox, scheduled ticks)
from backup.settings import Settings
from servicekit.migrations import run_alembic_env

run_alembic_env(SQLModel.metadata, Settings().database_url)
