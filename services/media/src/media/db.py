"""Engine and sessions of the media database."""

from servicekit import SessionMaker, create_engine, create_session_maker

__all__ = ["SessionMaker", "create_engine", "create_session_maker"]
