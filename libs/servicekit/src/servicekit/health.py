"""Liveness, readiness and metrics endpoints, for APIs and workers alike.

``/healthz`` says the process runs. ``/readyz`` answers 503 unless the database answers, the
broker connection is open and every consumer is attached; its body says which check failed.
``/metrics`` serves the process's Prometheus registry.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicekit.bus import Bus
from servicekit.consumer import Consumer


@dataclass
class Readiness:
    engine: AsyncEngine | None = None
    bus: Bus | None = None
    consumers: list[Consumer] = field(default_factory=list)

    async def report(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
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
async def liveness() -> dict[str, str]:
    return {"status": "ok"}


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
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def health_app(readiness: Readiness) -> FastAPI:
    """The small HTTP app a worker serves for probes and scraping."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.readiness = readiness
    app.include_router(router)
    return app
