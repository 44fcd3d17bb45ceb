"""Sessions of the auth database for request handlers."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import SessionMaker


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    maker: SessionMaker = request.app.state.session_maker
    async with maker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
