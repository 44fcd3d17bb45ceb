"""Infrastructure shared by every service: written once, imported, never copied.

The supported surface is ``__all__``: what the services use (their apps, workers, consumers,
migrations and settings), guarded by ``tests/unit/test_exported_members.py``. Import from
``servicekit`` itself; the modules behind it are private (``_outbox``, ``_consumer``...: the
kit's own business, free to move; the services import none of them). Besides,
``servicekit.defaults`` holds every default, ``servicekit.fastapi`` the web glue,
``servicekit.testing`` the test toolkit, and ``dead_letters`` and ``quarantine`` are commands.

Names load lazily (PEP 562 ``__getattr__``), unlike httpx's eager ``__init__``: importing any
module of the package runs this file first, and eager re-exports would make
``import servicekit._settings`` load aio-pika and SQLAlchemy (1.5 s) for a tool that only reads
settings. A name's module is imported the first time the name is asked for; type checkers see
ordinary imports.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from servicekit._bus import Bus
    from servicekit._consumer import Consumer, EventContext, Handler, Resources
    from servicekit._db import SessionMaker, create_engine, create_session_maker, libpq_url
    from servicekit._errors import (
        ApiError,
        NotAuthenticated,
        NotFound,
        PermissionDenied,
        error_responses,
        field_errors,
    )
    from servicekit._forms import FormBodyRoute
    from servicekit._health import Readiness
    from servicekit._logs import context_fields
    from servicekit._migrations import (
        create_outbox_quarantine,
        drop_outbox_quarantine,
        ensure_database,
        run_alembic_env,
        upgrade_database,
    )
    from servicekit._outbox import NOTIFY_CHANNEL, add_event, outbox_row
    from servicekit._request_ids import is_valid_request_id
    from servicekit._retries import RetryPolicy
    from servicekit._revocation import (
        RevokedUsers,
        hold_writer,
        record_user_state,
        writer_is_revoked,
    )
    from servicekit._runtime import (
        Messaging,
        api_lifespan,
        configure_observability,
        declare_queues,
        run_worker,
    )
    from servicekit._serving import serve_api
    from servicekit._settings import ServiceSettings, TokenSettings
    from servicekit._tables import InboxMessage, OutboxMessage, utcnow
    from servicekit._ticks import TickEmitter
    from servicekit._tokens import (
        CurrentPrincipal,
        CustomerPrincipal,
        OptionalPrincipal,
        Principal,
        SellerPrincipal,
        TokenVerifier,
        verifier_from_settings,
    )
    from servicekit._tracing import inject_headers
    from servicekit.fastapi import (
        HTTP_TELEMETRY,
        ReadConnectionDep,
        SessionDep,
        app_state,
        install_http_basics,
        service_app,
        slash_tolerant_routes,
    )
    from servicekit.service import Command, Schedule, ServiceSpec, Task, Worker, WorkerContext

#: Where each supported name lives; the module is imported when the name is first used.
_HOMES: dict[str, str] = {
    "Bus": "servicekit._bus",
    "Consumer": "servicekit._consumer",
    "EventContext": "servicekit._consumer",
    "Handler": "servicekit._consumer",
    "Resources": "servicekit._consumer",
    "SessionMaker": "servicekit._db",
    "create_engine": "servicekit._db",
    "create_session_maker": "servicekit._db",
    "libpq_url": "servicekit._db",
    "ApiError": "servicekit._errors",
    "NotAuthenticated": "servicekit._errors",
    "NotFound": "servicekit._errors",
    "PermissionDenied": "servicekit._errors",
    "error_responses": "servicekit._errors",
    "field_errors": "servicekit._errors",
    "HTTP_TELEMETRY": "servicekit.fastapi",
    "ReadConnectionDep": "servicekit.fastapi",
    "SessionDep": "servicekit.fastapi",
    "app_state": "servicekit.fastapi",
    "install_http_basics": "servicekit.fastapi",
    "service_app": "servicekit.fastapi",
    "slash_tolerant_routes": "servicekit.fastapi",
    "FormBodyRoute": "servicekit._forms",
    "Readiness": "servicekit._health",
    "context_fields": "servicekit._logs",
    "create_outbox_quarantine": "servicekit._migrations",
    "drop_outbox_quarantine": "servicekit._migrations",
    "ensure_database": "servicekit._migrations",
    "run_alembic_env": "servicekit._migrations",
    "upgrade_database": "servicekit._migrations",
    "NOTIFY_CHANNEL": "servicekit._outbox",
    "add_event": "servicekit._outbox",
    "outbox_row": "servicekit._outbox",
    "is_valid_request_id": "servicekit._request_ids",
    "RetryPolicy": "servicekit._retries",
    "RevokedUsers": "servicekit._revocation",
    "hold_writer": "servicekit._revocation",
    "record_user_state": "servicekit._revocation",
    "writer_is_revoked": "servicekit._revocation",
    "Messaging": "servicekit._runtime",
    "api_lifespan": "servicekit._runtime",
    "configure_observability": "servicekit._runtime",
    "declare_queues": "servicekit._runtime",
    "run_worker": "servicekit._runtime",
    "serve_api": "servicekit._serving",
    "Command": "servicekit.service",
    "Schedule": "servicekit.service",
    "ServiceSpec": "servicekit.service",
    "Task": "servicekit.service",
    "Worker": "servicekit.service",
    "WorkerContext": "servicekit.service",
    "ServiceSettings": "servicekit._settings",
    "TokenSettings": "servicekit._settings",
    "InboxMessage": "servicekit._tables",
    "OutboxMessage": "servicekit._tables",
    "utcnow": "servicekit._tables",
    "TickEmitter": "servicekit._ticks",
    "CurrentPrincipal": "servicekit._tokens",
    "CustomerPrincipal": "servicekit._tokens",
    "OptionalPrincipal": "servicekit._tokens",
    "Principal": "servicekit._tokens",
    "SellerPrincipal": "servicekit._tokens",
    "TokenVerifier": "servicekit._tokens",
    "verifier_from_settings": "servicekit._tokens",
    "inject_headers": "servicekit._tracing",
}

__all__ = [
    "HTTP_TELEMETRY",
    "NOTIFY_CHANNEL",
    "ApiError",
    "Bus",
    "Command",
    "Consumer",
    "CurrentPrincipal",
    "CustomerPrincipal",
    "EventContext",
    "FormBodyRoute",
    "Handler",
    "InboxMessage",
    "Messaging",
    "NotAuthenticated",
    "NotFound",
    "OptionalPrincipal",
    "OutboxMessage",
    "PermissionDenied",
    "Principal",
    "ReadConnectionDep",
    "Readiness",
    "Resources",
    "RetryPolicy",
    "RevokedUsers",
    "Schedule",
    "SellerPrincipal",
    "ServiceSettings",
    "ServiceSpec",
    "SessionDep",
    "SessionMaker",
    "Task",
    "TickEmitter",
    "TokenSettings",
    "TokenVerifier",
    "Worker",
    "WorkerContext",
    "add_event",
    "api_lifespan",
    "app_state",
    "configure_observability",
    "context_fields",
    "create_engine",
    "create_outbox_quarantine",
    "create_session_maker",
    "declare_queues",
    "drop_outbox_quarantine",
    "ensure_database",
    "error_responses",
    "field_errors",
    "hold_writer",
    "inject_headers",
    "install_http_basics",
    "is_valid_request_id",
    "libpq_url",
    "outbox_row",
    "record_user_state",
    "run_alembic_env",
    "run_worker",
    "serve_api",
    "service_app",
    "slash_tolerant_routes",
    "upgrade_database",
    "utcnow",
    "verifier_from_settings",
    "writer_is_revoked",
]


if not TYPE_CHECKING:  # type checkers see the imports above; a module __getattr__ would
    # make every misspelt name Any to them instead of an error.

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(import_module(home), name)
        globals()[name] = value  # found once; later lookups do not come here
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
