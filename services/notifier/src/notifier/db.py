"""Engine, sessions and the FastAPI session dependency."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import SessionMaker, create_engine, create_session_maker

__all__ = ["SessionDep", "SessionMaker", "create_engine", "create_session_maker"]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    session_maker: SessionMaker = request.app.state.session_maker
    async with session_maker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
