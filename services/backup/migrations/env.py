"""Alembic environment of the backup service."""

from sqlmodel import SQLModel

import backup.models  # noqa: F401  (registers the service's tables)
from backup.settings import Settings
from servicekit import run_alembic_env

run_alembic_env(SQLModel.metadata, Settings().database_url)
