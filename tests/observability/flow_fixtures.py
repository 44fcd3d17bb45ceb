"""Fixtures starting the services of one recipe creation (see ``recipe_flow`` for the flow).

A plugin module (``pytest_plugins`` in the tests that use it), not a ``conftest.py``: the
repository's tests import ``conftest`` by name (the root one), which a second conftest here
would shadow.
"""

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import gateway_config
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from observability.recipe_flow import FAST_RETRIES, Gateway, RecipeFlow, free_port
from pydantic import SecretStr

import media.main
import recipes.app
import recipes.main
from media.settings import Settings as MediaSettings
from recipes.settings import Settings as RecipesSettings
from servicekit import Consumer, upgrade_database
from servicekit._health import health_app
from servicekit.testing import TokenFactory, Vhost, eventually, truncate_all


@pytest.fixture(scope="session")
def recipes_database(make_database: Callable[[str], str]) -> str:
    url = make_database("obs_recipes")
    upgrade_database(recipes.main.SERVICE_DIR, url)
    return url


@pytest.fixture(scope="session")
def media_database(make_database: Callable[[str], str]) -> str:
    url = make_database("obs_media")
    upgrade_database(media.main.SERVICE_DIR, url)
    return url


@pytest.fixture(scope="session")
def recipes_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, recipes_port: int
) -> Iterator[Gateway | None]:
    """nginx from the gateway template in front of the recipes port; ``None`` without nginx."""
    if gateway_config.nginx_binary() is None:
        yield None
        return
    root = tmp_path_factory.mktemp("gateway")
    port = free_port()
    values = gateway_config.local_values(
        run_dir=root / "run",
        log_dir=root / "log",
        media_root=root / "media",
        port=port,
        recipes_upstream=f"127.0.0.1:{recipes_port}",
    )
    config = gateway_config.write_config(values, root / "run" / "nginx.conf")
    nginx = subprocess.Popen(gateway_config.nginx_command(config, values), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                assert nginx.poll() is None, "nginx exited"
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield Gateway(url=url, access_log=Path(values["ACCESS_LOG"]))
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)


async def _attached(consumers: list[Consumer]) -> None:
    async def check() -> bool:
        return all(consumer.is_attached for consumer in consumers)

    await eventually(check, what="consumers attached")


@contextlib.asynccontextmanager
async def serving(app: FastAPI, port: int) -> AsyncIterator[None]:
    """uvicorn on ``port`` in this event loop, as ``recipes api`` runs it."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, proxy_headers=True, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        assert not task.done(), "uvicorn stopped"
        return server.started

    try:
        await eventually(started, within=15, what="the recipes API")
        yield
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def recipe_flow(
    recipes_database: str,
    media_database: str,
    recipes_port: int,
    gateway: Gateway | None,
    vhost: Vhost,
    token_factory: TokenFactory,
    tmp_path: Path,
) -> AsyncIterator[RecipeFlow]:
    truncate_all(recipes_database)
    truncate_all(media_database)
    recipes_url = f"http://127.0.0.1:{recipes_port}"
    recipes_settings = RecipesSettings(
        database_url=recipes_database,
        amqp_url=vhost.url,
        environment="test",
        image_url_secret=SecretStr("observability-test-secret"),
        internal_base_url=recipes_url,
        api_port=recipes_port,
        data_dir=str(tmp_path / "recipes"),
        retry_delays=FAST_RETRIES,
        outbox_poll_interval=0.1,
    )
    media_settings = MediaSettings(
        database_url=media_database,
        amqp_url=vhost.url,
        recipes_internal_url=recipes_url,
        data_dir=str(tmp_path / "media"),
        public_base_url=f"{gateway.url if gateway else recipes_url}/media/",
        retry_delays=FAST_RETRIES,
        outbox_poll_interval=0.1,
        workers=1,
    )
    app = recipes.app.create_app(recipes_settings, token_verifier=token_factory.verifier())
    async with (
        recipes.main.service.open_worker(recipes_settings) as recipes_worker,
        media.main.service.open_worker(media_settings) as media_worker,
    ):
        try:
            await recipes_worker.messaging.start()
            await media_worker.messaging.start()
            await _attached(
                [*recipes_worker.messaging.consumers, *media_worker.messaging.consumers]
            )
            async with serving(app, recipes_port):
                yield RecipeFlow(
                    recipes_url=recipes_url,
                    gateway=gateway,
                    media_health=health_app(media_worker.readiness),
                    recipes_worker_health=health_app(recipes_worker.readiness),
                    amqp_url=vhost.url,
                    token_factory=token_factory,
                )
        finally:
            await media_worker.messaging.stop()
            await recipes_worker.messaging.stop()
