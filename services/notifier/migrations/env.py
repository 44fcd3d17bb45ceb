"""Alembic environment of the notifier service."""

from sqlmodel import SQLModel

import notifier.models  # noqa: F401  (registers the service's tables)
from notifier.settings import Settings
from servicekit import run_alembic_env

run_alembic_env(SQLModel.metadata, Settings().database_url)
