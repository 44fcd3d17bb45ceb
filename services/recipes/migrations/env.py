"""Alembic environment of the recipes service."""

from sqlmodel import SQLModel

import recipes.models  # noqa: F401  (registers the service's tables)
import servicekit.tables  # noqa: F401  (outbox, inbox)
from recipes.settings import Settings
from servicekit.migrations import run_alembic_env

run_alembic_env(SQLModel.metadata, Settings().database_url)
