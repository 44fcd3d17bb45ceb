from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.app import create_app
from notifier.db import SessionMaker, create_engine, create_session_maker
from notifier.mail.dispatch import Dispatcher
from notifier.mail.transport import Transport
from notifier.main import SERVICE_DIR
from notifier.settings import Settings
from notifier.worker import build_dispatcher, build_transport
from servicekit import upgrade_database
from servicekit.testing import TokenFactory, truncate_all
from tests.support import SmtpServer


@pytest.fixture(scope="session")
def database_url(make_database: Callable[[str], str]) -> str:
    url = make_database("notifier")
    upgrade_database(SERVICE_DIR, url)
    return url


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def settings(database_url: str, smtp: SmtpServer) -> Settings:
    truncate_all(database_url)
    return Settings(
        database_url=database_url,
        environment="test",
        unsubscribe_secret="test-unsubscribe-secret",
        public_base_url="https://recipes.example.test",
        retry_delays=(0.05, 0.1),
        outbox_poll_interval=0.1,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        max_per_second=0,
        send_retry_delay=0,
        dispatch_interval=0.05,
    )


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
def session_maker(engine: AsyncEngine) -> SessionMaker:
    return create_session_maker(engine)


@pytest.fixture
async def transport(settings: Settings) -> AsyncIterator[Transport]:
    transport = build_transport(settings)
    yield transport
    await transport.close()


@pytest.fixture
def dispatcher(session_maker: SessionMaker, settings: Settings, transport: Transport) -> Dispatcher:
    return build_dispatcher(session_maker, settings, transport)


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
