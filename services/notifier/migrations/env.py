"""Alembic environment of the notifier service."""

from sqlmodel import SQLModel

import notifier.models  # noqa: F401  (registers the service's tables)
import servicekit.tables  # noqa: F401  (outbox, inbox, scheduled ticks)
from notifier.settings import Settings
from servicekit.migrations import run_alembic_env

run_alembic_env(SQLModel.metadata, Settings().database_url)
