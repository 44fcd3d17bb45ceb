from collections.abc import AsyncIterator, Callable, Iterator

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

import servicekit._tables  # noqa: F401  (registers the messaging tables)
from servicekit._db import SessionMaker, create_engine, create_session_maker, libpq_url
from servicekit.testing import truncate_all

TEST_TABLES = """
CREATE TABLE IF NOT EXISTS applied_effects (
    id serial PRIMARY KEY,
    event_id uuid NOT NULL,
    note text NOT NULL
)
"""


@pytest.fixture(scope="session")
def database_url(make_database: Callable[[str], str]) -> str:
    url = make_database("servicekit")
    from sqlalchemy import create_engine as create_sync_engine

    engine = create_sync_engine(url)
    SQLModel.metadata.create_all(engine)
    engine.dispose()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(TEST_TABLES)
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
