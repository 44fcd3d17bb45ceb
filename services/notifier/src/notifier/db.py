"""Engine and sessions (requests get theirs from ``servicekit.fastapi``)."""

from servicekit import SessionMaker, create_engine, create_session_maker

__all__ = ["SessionMaker", "create_engine", "create_session_maker"]
