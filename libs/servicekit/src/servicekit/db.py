"""Engine and sessions: every service talks to its own PostgreSQL through these."""

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SessionMaker = async_sessionmaker[AsyncSession]


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine on psycopg 3; ``database_url`` uses the ``postgresql+psycopg`` scheme."""
    return create_async_engine(
        database_url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )


def create_session_maker(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def libpq_url(database_url: str) -> str:
    """The same URL in the form libpq and plain psycopg accept (no SQLAlchemy driver suffix)."""
    scheme, rest = database_url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgresql") else database_url
