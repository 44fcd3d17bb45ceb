"""Alembic environment of the auth service."""

from sqlmodel import SQLModel

import auth.models  # noqa: F401  (registers the service's tables)
from auth.settings import Settings
from servicekit import run_alembic_env

run_alembic_env(SQLModel.metadata, Settings().database_url)
