"""Alembic environment of the media service."""

from sqlmodel import SQLModel

import media.models  # noqa: F401  (registers the service's tables)
from media.settings import Settings
from servicekit import run_alembic_env

run_alembic_env(SQLModel.metadata, Settings().database_url)
