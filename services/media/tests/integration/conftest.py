from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from media.db import SessionMaker

from .harness import MediaWorker, worker_settings

StartWorker = Callable[..., Any]


@pytest.fixture
async def start_worker(
    clean_database: str, amqp_url: str, session_maker: SessionMaker
) -> AsyncIterator[StartWorker]:
    """Starts a media worker with settings overrides; all are stopped after the test."""
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> MediaWorker:
            settings = worker_settings(clean_database, amqp_url, **overrides)
            worker = await MediaWorker(settings, session_maker).start()
            stack.push_async_callback(worker.stop)
            return worker

        yield start
