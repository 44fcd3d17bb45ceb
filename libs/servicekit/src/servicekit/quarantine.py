"""Inspect and release quarantined outbox rows: ``outbox-quarantine list|show|release``.

The relay moves a row it cannot publish (``servicekit._outbox``) to ``outbox_quarantine`` with the
reason. ``DATABASE_URL`` names the service's database (``postgresql+psycopg://...``, as the
service's own ``<PREFIX>DATABASE_URL``). ``release`` moves rows back to the outbox, each in its
original place in the order (its ``created_at``), and wakes the relays: release after fixing the
cause (a broker policy, a size limit), or the row comes back.
"""

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Table, delete, func, insert, select

from servicekit._db import SessionMaker, create_engine, create_session_maker
from servicekit._outbox import NOTIFY_CHANNEL
from servicekit._tables import OutboxMessage, QuarantinedEvent
from servicekit.defaults import DEFAULT_PEEK_LIMIT

_OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
_QUARANTINE: Table = QuarantinedEvent.__table__  # type: ignore[attr-defined]
_MOVED_BACK = ["event_id", "routing_key", "envelope", "headers", "created_at"]


class QuarantineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="")

    database_url: str


@dataclass(frozen=True)
class Quarantined:
    event_id: uuid.UUID
    routing_key: str
    reason: str
    quarantined_at: datetime
    envelope: dict[str, Any]


async def count(session_maker: SessionMaker) -> int:
    async with session_maker() as session:
        return int(await session.scalar(select(func.count()).select_from(_QUARANTINE)) or 0)


async def peek(session_maker: SessionMaker, limit: int = DEFAULT_PEEK_LIMIT) -> list[Quarantined]:
    """The oldest ``limit`` quarantined rows, left where they are."""
    query = select(_QUARANTINE).order_by(_QUARANTINE.c.created_at).limit(limit)
    async with session_maker() as session:
        rows = (await session.execute(query)).mappings().all()
    return [
        Quarantined(
            event_id=row["event_id"],
            routing_key=row["routing_key"],
            reason=row["reason"],
            quarantined_at=row["quarantined_at"],
            envelope=row["envelope"],
        )
        for row in rows
    ]


async def release(session_maker: SessionMaker, event_ids: Sequence[uuid.UUID] | None) -> int:
    """Move the given rows (all when ``None``) back to the outbox; returns how many moved."""
    chosen = select(*(_QUARANTINE.c[name] for name in _MOVED_BACK))
    if event_ids is not None:
        chosen = chosen.where(_QUARANTINE.c.event_id.in_(event_ids))
    async with session_maker() as session, session.begin():
        moved = (
            await session.scalars(
                insert(_OUTBOX).from_select(_MOVED_BACK, chosen).returning(_OUTBOX.c.event_id)
            )
        ).all()
        if moved:
            await session.execute(delete(_QUARANTINE).where(_QUARANTINE.c.event_id.in_(moved)))
            await session.execute(select(func.pg_notify(NOTIFY_CHANNEL, "")))
    return len(moved)


def _as_json(row: Quarantined) -> dict[str, Any]:
    return {
        "event_id": str(row.event_id),
        "routing_key": row.routing_key,
        "reason": row.reason,
        "quarantined_at": row.quarantined_at.isoformat(),
        "envelope": row.envelope,
    }


async def _run(args: argparse.Namespace, database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    session_maker = create_session_maker(engine)
    try:
        if args.command == "list":
            print(f"outbox_quarantine: {await count(session_maker)}")
        elif args.command == "show":
            for row in await peek(session_maker, args.limit):
                print(json.dumps(_as_json(row)))
        else:
            ids = None if args.all else [uuid.UUID(value) for value in args.event_ids]
            print(f"released {await release(session_maker, ids)}")
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="outbox-quarantine", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="how many rows are quarantined")
    show = commands.add_parser("show", help="the oldest rows, with their reasons")
    show.add_argument("--limit", type=int, default=DEFAULT_PEEK_LIMIT)
    release_cmd = commands.add_parser("release", help="move rows back to the outbox")
    release_cmd.add_argument("event_ids", nargs="*", help="event ids (or --all)")
    release_cmd.add_argument("--all", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "release" and not args.all and not args.event_ids:
        parser.error("release needs event ids or --all")
    asyncio.run(_run(args, QuarantineSettings().database_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
