"""Alembic environment of the recipes service."""

from sqlmodel import SQLModel

import recipes.models  # noqa: F401  (registers the service's tables)
from recipes.settings import Settings
from servicekit import run_alembic_env

run_alembic_env(SQLModel.metadata, Settings().database_url)
