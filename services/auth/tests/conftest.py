from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from auth.app import create_app
from auth.keys import KeyRing
from auth.main import SERVICE_DIR
from auth.settings import Settings
from servicekit import upgrade_database
from servicekit.testing import truncate_all


@pytest.fixture(scope="session")
def migrated_database(make_database: Callable[[str], str]) -> str:
    url = make_database("auth")
    upgrade_database(SERVICE_DIR, url)
    return url


@pytest.fixture
def database_url(migrated_database: str) -> Iterator[str]:
    truncate_all(migrated_database)
    yield migrated_database


@pytest.fixture(scope="session")
def key_ring() -> KeyRing:
    return KeyRing(signing_key=Ed25519PrivateKey.generate())


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        # Nothing listens there: tests that need the broker pass their own vhost URL.
        amqp_url="amqp://guest:guest@127.0.0.1:1/",
        data_dir=tmp_path,
        # Cheap hashes keep the suite fast; the OWASP defaults are tested in test_passwords.
        argon2_memory_cost=1024,
        argon2_time_cost=1,
        login_failures_per_account_and_address=3,
        login_failures_per_address=5,
        login_failures_per_username=6,
    )


@pytest.fixture
async def app(settings: Settings, key_ring: KeyRing) -> AsyncIterator[FastAPI]:
    """The app without its lifespan (no relay): tests that need one run the lifespan."""
    app = create_app(settings, keys=key_ring)
    yield app
    await app.state.engine.dispose()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as client:
        yield client
