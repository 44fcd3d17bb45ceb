from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from recipes.app import create_app
from recipes.main import SERVICE_DIR
from recipes.settings import Settings
from servicekit import SessionMaker, upgrade_database
from servicekit.testing import TokenFactory, truncate_all
from tests.support import TEST_MAX_UPLOAD, Users


@pytest.fixture(scope="session")
def database_url(make_database: Callable[[str], str]) -> str:
    url = make_database("recipes")
    upgrade_database(SERVICE_DIR, url)
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    truncate_all(database_url)
    return Settings(
        database_url=database_url,
        environment="test",
        image_url_secret=SecretStr("test-image-secret"),
        max_upload_bytes=TEST_MAX_UPLOAD,
        retry_delays=(0.05, 0.1),
        outbox_poll_interval=0.1,
        popular_min_votes=3,
    )


@pytest.fixture
async def app(settings: Settings, token_factory: TokenFactory) -> AsyncIterator[FastAPI]:
    app = create_app(settings, token_verifier=token_factory.verifier(), relay_outbox=False)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def session_maker(app: FastAPI) -> SessionMaker:
    maker: SessionMaker = app.state.session_maker
    return maker


@pytest.fixture
def users(token_factory: TokenFactory) -> Users:
    return Users(token_factory)
