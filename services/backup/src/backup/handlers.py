"""Event consumers: thin, each calls a use case with the typed event."""

import asyncio

from backup.exports import Exporter
from backup.service import apply_user_deletion, apply_user_snapshot
from backup.settings import BACKUP_JOB
from contracts import Event, ScheduleTick, UserDeleted, UserRegistered, UserUpdated
from contracts.events import UserSnapshot
from servicekit import EventContext, Handler


async def on_user_snapshot(ctx: EventContext, event: UserSnapshot) -> None:
    await apply_user_snapshot(session=ctx.session, snapshot=event)


async def on_user_deleted(ctx: EventContext, event: UserDeleted) -> None:
    await apply_user_deletion(session=ctx.session, deletion=event)


async def on_tick(ctx: EventContext, tick: ScheduleTick) -> None:
    if tick.job != BACKUP_JOB:
        return  # other services' jobs share the routing key
    # Blocking file and COPY work stays off the event loop; a failure raises, so the
    # consumer retries it, and the exports table makes a retry after success a no-op.
    await asyncio.to_thread(ctx.resource(Exporter).export_slot, tick.slot, trigger="schedule")


#: What ``backup.events`` consumes: the service's spec (``backup.main``) declares it.
HANDLERS: dict[type[Event], Handler] = {
    UserRegistered: on_user_snapshot,
    UserUpdated: on_user_snapshot,
    UserDeleted: on_user_deleted,
    ScheduleTick: on_tick,
}
