"""Engine and sessions (async, for the consumer) and the plain psycopg URL the export uses."""

from servicekit import SessionMaker, create_engine, create_session_maker, libpq_url

__all__ = ["SessionMaker", "create_engine", "create_session_maker", "libpq_url"]
