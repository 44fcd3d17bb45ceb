"""The web glue every service's API uses: dependencies, slash-tolerant routes, the basics.

Each service with an API had its own copy of the session dependency (three), of the route
helper that serves a path with and without its trailing slash (two) and of small dependencies
reading ``app.state``; they live here once (issue 19). The lifespan
(``servicekit.api_lifespan``, or the service's own) puts on ``app.state`` what these
read: ``engine`` and ``session_maker``, plus whatever a service names with ``app_state``.
"""

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from servicekit._db import SessionMaker

# Re-exported: with the dependencies, what a service's ``create_app`` needs from the kit.
from servicekit._http import HTTP_TELEMETRY as HTTP_TELEMETRY
from servicekit._http import install_http_basics as install_http_basics
from servicekit._runtime import api_lifespan
from servicekit._settings import ServiceSettings

__all__ = [
    "HTTP_TELEMETRY",
    "ReadConnectionDep",
    "RouteDecorator",
    "SessionDep",
    "app_state",
    "get_read_connection",
    "get_session",
    "install_http_basics",
    "service_app",
    "slash_tolerant_routes",
]

F = TypeVar("F", bound=Callable[..., Any])


def service_app(
    settings: ServiceSettings,
    *,
    title: str,
    prefix: str,
    relay_outbox: bool = True,
    engine: AsyncEngine | None = None,
    redirect_slashes: bool = False,
) -> FastAPI:
    """A service's FastAPI app before its routes: the shared lifespan (database, outbox relay,
    readiness), OpenAPI and docs under the service's public ``prefix``, the basics (health,
    metrics, request ids, errors as JSON), and ``app.state.settings``.

    ``redirect_slashes`` stays off where routes answer with and without the slash
    (``slash_tolerant_routes``): a redirect would lose a POST body behind the gateway.
    """
    app = FastAPI(
        title=title,
        version="1.0.0",
        lifespan=api_lifespan(settings, relay_outbox=relay_outbox, engine=engine),
        openapi_url=f"{prefix}/openapi.json",
        docs_url=f"{prefix}/docs",
        redoc_url=None,
        redirect_slashes=redirect_slashes,
        telemetry=HTTP_TELEMETRY,
    )
    app.state.settings = settings
    install_http_basics(app)
    return app


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """An ORM session of the app's ``session_maker``, closed when the response is sent."""
    session_maker: SessionMaker = request.app.state.session_maker
    async with session_maker() as session:
        yield session


async def get_read_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """A connection in autocommit, for reads of ONE statement (consistent on its own).

    No ORM session and no transaction: a hot read saves the ``BEGIN`` and ``ROLLBACK`` round
    trips a session makes around it.
    """
    engine: AsyncEngine = request.app.state.engine
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


SessionDep = Annotated[AsyncSession, Depends(get_session)]
ReadConnectionDep = Annotated[AsyncConnection, Depends(get_read_connection)]


def app_state(name: str) -> Any:
    """A dependency on ``app.state.<name>``, set up once by ``create_app``.

    ``SettingsDep = Annotated[Settings, app_state("settings")]``. An async function, so FastAPI
    calls it in the event loop instead of a worker thread.
    """

    async def read(request: Request) -> Any:
        return getattr(request.app.state, name)

    read.__name__ = f"app_state_{name}"
    return Depends(read)


class RouteDecorator(Protocol):
    """``@route("/path/", methods=[...], **add_api_route_arguments)``."""

    def __call__(self, path: str, *, methods: list[str], **kwargs: Any) -> Callable[[F], F]: ...


def slash_tolerant_routes(router: APIRouter) -> RouteDecorator:
    """A decorator registering a route on ``router`` with and without its trailing slash.

    The original backend (Django) answered both forms and clients use both: the documented
    form is the one written (with the slash); the other is served too, left out of the schema.
    Both being registered, neither is answered by a redirect.
    """

    def route(path: str, *, methods: list[str], **kwargs: Any) -> Callable[[F], F]:
        def register(endpoint: F) -> F:
            router.add_api_route(path, endpoint, methods=methods, **kwargs)
            if path.endswith("/"):
                hidden = {**kwargs, "include_in_schema": False}
                router.add_api_route(path.rstrip("/"), endpoint, methods=methods, **hidden)
            return endpoint

        return register

    return route
