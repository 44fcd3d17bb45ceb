from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backup.db import SessionMaker, create_engine, create_session_maker, libpq_url
from backup.exports import Exporter
from contracts import UserRegistered, UserRole
from servicekit import upgrade_database
from servicekit.testing import truncate_all

SERVICE_DIR = Path(__file__).resolve().parents[1]
JOINED = datetime(2026, 1, 5, 9, 30, 15, 123456, tzinfo=UTC)


def registered(
    user_id: int, username: str, *, email: str | None = None, **fields: object
) -> UserRegistered:
    values: dict[str, object] = {
        "user_id": user_id,
        "username": username,
        "email": email if email is not None else f"{username}@example.com",
        "role": UserRole.CUSTOMER,
        "date_joined": JOINED,
        "updated_at": JOINED,
        "version": 1,
    }
    values.update(fields)
    return UserRegistered.model_validate(values)


@pytest.fixture(scope="session")
def database_url(make_database: Callable[[str], str]) -> str:
    url = make_database("backup")
    upgrade_database(SERVICE_DIR, url)
    return url


@pytest.fixture
def clean_database(database_url: str) -> Iterator[str]:
    truncate_all(database_url)
    yield database_url


@pytest.fixture
async def engine(clean_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(clean_database, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
def session_maker(engine: AsyncEngine) -> SessionMaker:
    return create_session_maker(engine)


@pytest.fixture
def backup_dir(tmp_path: Path) -> Path:
    return tmp_path / "backups"


@pytest.fixture
def exporter(clean_database: str, backup_dir: Path) -> Exporter:
    return Exporter(database_url=libpq_url(clean_database), directory=backup_dir, keep_last=8)
