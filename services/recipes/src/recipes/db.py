"""Engine, sessions and the FastAPI session and read-connection dependencies."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from servicekit.db import SessionMaker, create_engine, create_session_maker

__all__ = [
    "ReadConnectionDep",
    "SessionDep",
    "SessionMaker",
    "create_engine",
    "create_session_maker",
]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    session_maker: SessionMaker = request.app.state.session_maker
    async with session_maker() as session:
        yield session


async def get_read_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """A connection in autocommit, for reads of ONE statement (consistent on its own).

    No ORM session and no transaction: a hot read saves the ``BEGIN`` and ``ROLLBACK`` round
    trips a session makes around it.
    """
    engine: AsyncEngine = request.app.state.engine
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


SessionDep = Annotated[AsyncSession, Depends(get_session)]
ReadConnectionDep = Annotated[AsyncConnection, Depends(get_read_connection)]
