"""What ``servicekit._db.FairAsyncQueuePool`` relies on inside SQLAlchemy, checked directly.

The fair pool replaces the queue class of SQLAlchemy's asyncio pool (``_queue_class``, a private
attribute) and overrides ``get`` and ``put_nowait`` of ``AsyncAdaptedQueue``. If an upgrade
renames the attribute, changes those signatures or returns connections through another method,
the pool would silently go back to first-to-ask (or break at the first checkout): these tests
fail first, naming what moved.
"""

import inspect
from unittest import mock

import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool
from sqlalchemy.util.queue import AsyncAdaptedQueue

from servicekit._db import FairAsyncQueue, FairAsyncQueuePool, create_engine

pytestmark = pytest.mark.integration

#: The SQLAlchemy release these internals were read in. A new one: read
#: sqlalchemy/pool/impl.py (QueuePool) and sqlalchemy/util/queue.py (AsyncAdaptedQueue) again,
#: check FairAsyncQueue against them, then update this.
CHECKED_VERSION = "2.1.9"


def test_the_sqlalchemy_release_is_the_one_the_fair_pool_was_checked_against() -> None:
    assert sqlalchemy.__version__ == CHECKED_VERSION, (
        f"SQLAlchemy {sqlalchemy.__version__}: re-check servicekit._db.FairAsyncQueuePool "
        "against its pool internals, then update CHECKED_VERSION"
    )


def test_the_overridden_queue_methods_keep_their_signatures() -> None:
    def parameters(name: str) -> list[str]:
        return list(inspect.signature(getattr(AsyncAdaptedQueue, name)).parameters)

    assert parameters("__init__") == ["self", "maxsize", "use_lifo"]
    assert parameters("get") == ["self", "block", "timeout"]
    assert parameters("put_nowait") == ["self", "item"]
    assert parameters("get_nowait") == ["self"]
    assert "_queue_class" in vars(AsyncAdaptedQueuePool)
    assert issubclass(FairAsyncQueuePool, QueuePool)


async def test_the_pool_queues_connections_in_the_fair_queue(clean_database: str) -> None:
    engine = create_engine(clean_database, pool_size=2)
    try:
        queue = engine.pool._pool  # type: ignore[attr-defined]
        assert type(queue) is FairAsyncQueue
        assert queue.maxsize == 2
        with (
            mock.patch.object(
                FairAsyncQueue, "get", autospec=True, side_effect=FairAsyncQueue.get
            ) as got,
            mock.patch.object(
                FairAsyncQueue, "put_nowait", autospec=True, side_effect=FairAsyncQueue.put_nowait
            ) as returned,
        ):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        # The second checkout takes the connection the first returned, through get; every
        # return goes through put_nowait, where a waiting checkout is served first.
        assert got.call_count >= 1
        assert returned.call_count == 2
    finally:
        await engine.dispose()
