from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from media.db import SessionMaker, create_engine, create_session_maker
from servicekit import upgrade_database
from servicekit.testing import truncate_all

from .cloudinary_standin import CloudinaryStandIn

SERVICE_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def database_url(make_database: Callable[[str], str]) -> str:
    url = make_database("media")
    upgrade_database(SERVICE_DIR, url)
    return url


@pytest.fixture
def clean_database(database_url: str) -> str:
    truncate_all(database_url)
    return database_url


@pytest.fixture
async def engine(clean_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(clean_database, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
def session_maker(engine: AsyncEngine) -> SessionMaker:
    return create_session_maker(engine)


@pytest.fixture
def cloudinary_standin() -> Iterator[CloudinaryStandIn]:
    standin = CloudinaryStandIn().start()
    yield standin
    standin.stop()
