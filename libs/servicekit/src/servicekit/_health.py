"""Liveness, readiness and metrics endpoints, for APIs and workers alike.

``/healthz`` says the process runs and none of its background tasks (consumers, relay, tick
emitters, dispatchers) has ended: one that ended turns it red, so the supervisor restarts the
process (workers also exit non-zero, ``servicekit._runtime``). ``/readyz`` answers 503 unless
every check holds; its body says which failed. What it checks follows what the process promises
(issue 15): an API is ready when its own database answers, since the outbox keeps its writes
while the broker is away; a worker also needs the broker connection and its consumers attached.
A broker outage therefore shows in the workers' readiness, in ``outbox_oldest_age_seconds`` and
its alert, never by taking the APIs out of service. ``/metrics`` serves the Prometheus registry.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicekit._bus import Bus
from servicekit._consumer import Consumer
from servicekit._metrics import exposition


@dataclass
class Liveness:
    """The background tasks of a process that ended when they should run forever, and why."""

    ended: dict[str, str] = field(default_factory=dict)
    _listeners: list[Callable[[], None]] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return not self.ended

    def task_ended(self, name: str, reason: str) -> None:
        self.ended[name] = reason
        for listener in self._listeners:
            listener()

    def on_task_ended(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)


@dataclass
class Readiness:
    engine: AsyncEngine | None = None
    bus: Bus | None = None
    consumers: list[Consumer] = field(default_factory=list)
    liveness: Liveness | None = None

    async def report(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        if self.liveness is not None and not self.liveness.alive:
            checks["tasks"] = dict.fromkeys(self.liveness.ended, False)
        if self.engine is not None:
            checks["database"] = await _database_ok(self.engine)
        if self.bus is not None:
            checks["broker"] = self.bus.is_connected
        if self.consumers:
            checks["consumers"] = {c.queue: c.is_attached for c in self.consumers}
        ready = all(
            all(value.values()) if isinstance(value, dict) else value for value in checks.values()
        )
        return ready, checks


async def _database_ok(engine: AsyncEngine) -> bool:
    try:
        async with asyncio.timeout(2.0), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def liveness(request: Request) -> JSONResponse:
    state: Readiness | None = getattr(request.app.state, "readiness", None)
    if state is not None and state.liveness is not None and not state.liveness.alive:
        return JSONResponse({"status": "dead", "ended": state.liveness.ended}, 503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readiness(request: Request) -> JSONResponse:
    state: Readiness | None = getattr(request.app.state, "readiness", None)
    if state is None:
        return JSONResponse({"status": "starting", "checks": {}}, 503)
    ready, checks = await state.report()
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503
    )


@router.get("/metrics")
async def metrics() -> Response:
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


def health_app(readiness: Readiness) -> FastAPI:
    """The small HTTP app a worker serves for probes and scraping."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.readiness = readiness
    app.include_router(router)
    return app
