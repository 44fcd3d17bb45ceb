"""Infrastructure shared by every service: written once, imported, never copied.

The supported surface is ``__all__``: what the services use (their apps, workers, consumers,
migrations and settings), guarded by ``tests/unit/test_exported_members.py``. Import from
``servicekit`` itself; the modules behind it are the kit's own business and may move. Besides,
``servicekit.defaults`` holds every default, ``servicekit.fastapi`` the web glue,
``servicekit.testing`` the test toolkit, and ``dead_letters`` and ``quarantine`` are commands.

Names load lazily (PEP 562 ``__getattr__``), unlike httpx's eager ``__init__``: importing any
module of the package runs this file first, and eager re-exports would make
``import servicekit.settings`` load aio-pika and SQLAlchemy (1.5 s) for a tool that only reads
settings. A name's module is imported the first time the name is asked for; type checkers see
ordinary imports.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from servicekit.bus import Bus
    from servicekit.consumer import Consumer, EventContext, Handler, Resources
    from servicekit.db import SessionMaker, create_engine, create_session_maker, libpq_url
    from servicekit.errors import (
        ApiError,
        NotAuthenticated,
        NotFound,
        PermissionDenied,
        error_responses,
        field_errors,
    )
    from servicekit.fastapi import (
        HTTP_TELEMETRY,
        ReadConnectionDep,
        SessionDep,
        app_state,
        install_http_basics,
        service_app,
        slash_tolerant_routes,
    )
    from servicekit.forms import FormBodyRoute
    from servicekit.health import Readiness
    from servicekit.logs import context_fields
    from servicekit.migrations import (
        create_outbox_quarantine,
        drop_outbox_quarantine,
        ensure_database,
        run_alembic_env,
        upgrade_database,
    )
    from servicekit.outbox import NOTIFY_CHANNEL, add_event, outbox_row
    from servicekit.request_ids import is_valid_request_id
    from servicekit.retries import RetryPolicy
    from servicekit.revocation import RevokedUsers, hold_writer, record_user_state
    from servicekit.runtime import (
        Messaging,
        api_lifespan,
        configure_observability,
        declare_queues,
        run_worker,
    )
    from servicekit.service import Command, Schedule, ServiceSpec, Task, Worker, WorkerContext
    from servicekit.serving import serve_api
    from servicekit.settings import ServiceSettings, TokenSettings
    from servicekit.tables import InboxMessage, OutboxMessage, utcnow
    from servicekit.ticks import TickEmitter
    from servicekit.tokens import (
        CurrentPrincipal,
        CustomerPrincipal,
        OptionalPrincipal,
        Principal,
        SellerPrincipal,
        TokenVerifier,
        verifier_from_settings,
    )
    from servicekit.tracing import inject_headers

#: Where each supported name lives; the module is imported when the name is first used.
_HOMES: dict[str, str] = {
    "Bus": "servicekit.bus",
    "Consumer": "servicekit.consumer",
    "EventContext": "servicekit.consumer",
    "Handler": "servicekit.consumer",
    "Resources": "servicekit.consumer",
    "SessionMaker": "servicekit.db",
    "create_engine": "servicekit.db",
    "create_session_maker": "servicekit.db",
    "libpq_url": "servicekit.db",
    "ApiError": "servicekit.errors",
    "NotAuthenticated": "servicekit.errors",
    "NotFound": "servicekit.errors",
    "PermissionDenied": "servicekit.errors",
    "error_responses": "servicekit.errors",
    "field_errors": "servicekit.errors",
    "HTTP_TELEMETRY": "servicekit.fastapi",
    "ReadConnectionDep": "servicekit.fastapi",
    "SessionDep": "servicekit.fastapi",
    "app_state": "servicekit.fastapi",
    "install_http_basics": "servicekit.fastapi",
    "service_app": "servicekit.fastapi",
    "slash_tolerant_routes": "servicekit.fastapi",
    "FormBodyRoute": "servicekit.forms",
    "Readiness": "servicekit.health",
    "context_fields": "servicekit.logs",
    "create_outbox_quarantine": "servicekit.migrations",
    "drop_outbox_quarantine": "servicekit.migrations",
    "ensure_database": "servicekit.migrations",
    "run_alembic_env": "servicekit.migrations",
    "upgrade_database": "servicekit.migrations",
    "NOTIFY_CHANNEL": "servicekit.outbox",
    "add_event": "servicekit.outbox",
    "outbox_row": "servicekit.outbox",
    "is_valid_request_id": "servicekit.request_ids",
    "RetryPolicy": "servicekit.retries",
    "RevokedUsers": "servicekit.revocation",
    "hold_writer": "servicekit.revocation",
    "record_user_state": "servicekit.revocation",
    "Messaging": "servicekit.runtime",
    "api_lifespan": "servicekit.runtime",
    "configure_observability": "servicekit.runtime",
    "declare_queues": "servicekit.runtime",
    "run_worker": "servicekit.runtime",
    "serve_api": "servicekit.serving",
    "Command": "servicekit.service",
    "Schedule": "servicekit.service",
    "ServiceSpec": "servicekit.service",
    "Task": "servicekit.service",
    "Worker": "servicekit.service",
    "WorkerContext": "servicekit.service",
    "ServiceSettings": "servicekit.settings",
    "TokenSettings": "servicekit.settings",
    "InboxMessage": "servicekit.tables",
    "OutboxMessage": "servicekit.tables",
    "utcnow": "servicekit.tables",
    "TickEmitter": "servicekit.ticks",
    "CurrentPrincipal": "servicekit.tokens",
    "CustomerPrincipal": "servicekit.tokens",
    "OptionalPrincipal": "servicekit.tokens",
    "Principal": "servicekit.tokens",
    "SellerPrincipal": "servicekit.tokens",
    "TokenVerifier": "servicekit.tokens",
    "verifier_from_settings": "servicekit.tokens",
    "inject_headers": "servicekit.tracing",
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
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # found once; later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
