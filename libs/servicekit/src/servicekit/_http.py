"""What every service's FastAPI app gets: errors, request ids, HTTP metrics, health routes."""

import logging
import time
from collections.abc import MutableMapping
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit._bodies import JsonBodyLimitMiddleware
from servicekit._errors import (
    ERROR_DESCRIPTIONS,
    ErrorBody,
    InvalidInput,
    error_body,
    install_error_handlers,
)
from servicekit._health import router as health_router
from servicekit._logs import request_id_var as request_id_var
from servicekit._metrics import HTTP_LATENCY, HTTP_REQUESTS
from servicekit._request_ids import accepted_request_id
from servicekit._tracing import TRACER, extract_context

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
#: Probes and scrapes: no span for them, they would bury the requests worth tracing.
COMPONENTS = "#/components/schemas/"
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def is_probe(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED_PATHS


#: ``FastAPI(telemetry=HTTP_TELEMETRY)`` keeps FastAPI's own spans off probes and scrapes.
HTTP_TELEMETRY: TelemetryConfig = {"exclude": is_probe}


class RequestContextMiddleware:
    """Pure ASGI (BaseHTTPMiddleware costs throughput): request id, server span, metrics.

    The request id (``request_id_var``) and the trace id appear in every log line written while
    the request is served. FastAPI's own telemetry makes the server span when a tracer provider
    is installed (it wraps all middleware); otherwise this middleware starts one from the
    caller's ``traceparent``, which with tracing off still carries the caller's trace id on to
    the logs and the outbox.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1"): value for key, value in scope["headers"]}
        incoming = headers.get(REQUEST_ID_HEADER, b"").decode("latin-1")
        request_id = accepted_request_id(incoming)
        if scope["path"] in UNTRACED_PATHS or trace.get_current_span().is_recording():
            trace.get_current_span().set_attribute("http.request.id", request_id)
            await self._serve(scope, receive, send, request_id, None)
            return
        with TRACER.start_as_current_span(
            scope["method"],
            context=extract_context(headers),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": scope["method"],
                "url.path": scope["path"],
                "http.request.id": request_id,
            },
        ) as span:
            await self._serve(scope, receive, send, request_id, span)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, request_id: str, span: Span | None
    ) -> None:
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if response_started:
                raise  # nothing sensible can follow a started response; let the server close it
            await _answer_unhandled_error(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(scope["method"], path, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], path).observe(time.perf_counter() - started)
            if span is not None:
                _describe_span(span, scope["method"], path, status)


async def _answer_unhandled_error(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a bug with the JSON 500 here instead of letting the exception reach the server.

    Starlette's outermost middleware would answer it too, but then re-raises, and uvicorn closes
    the keep-alive connection: a gateway reusing that upstream connection hands the *next*
    client a 502. Handled here, the connection stays usable and only the failing request fails.
    """
    logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
    response = JSONResponse(error_body("Internal server error.", "internal_error"), 500)
    await response(scope, receive, send)


def _describe_span(span: Span, method: str, route: str, status: int) -> None:
    """Name the server span after the route template once routing has found it."""
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(StatusCode.ERROR)


def document_errors_as_answered(app: FastAPI) -> None:
    """Make the OpenAPI schema say what the service answers on errors.

    FastAPI documents a 422 with its own body on every route with parameters; this platform
    answers invalid input with a 400 (the original backend's shape, see ``errors``), and every
    route that reaches the database may answer 503 while it is unavailable. Clients and the
    fuzzing suite read these schemas, so they must match what is sent.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        for model in (ErrorBody, InvalidInput):
            components.setdefault(
                model.__name__, model.model_json_schema(ref_template=f"{COMPONENTS}{{model}}")
            )
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                _document_errors(operation["responses"])
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_errors(responses: dict[str, Any]) -> None:
    if responses.pop("422", None) is not None:
        responses.setdefault("400", _documented(400, InvalidInput))
    responses.setdefault("503", _documented(503, ErrorBody))


def _documented(status: int, model: type[BaseModel]) -> dict[str, Any]:
    schema = {"$ref": COMPONENTS + model.__name__}
    return {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": schema}},
    }


def install_http_basics(app: FastAPI) -> None:
    """Error handlers, request-id and metrics middleware, JSON body limits, health routes."""
    install_error_handlers(app)
    document_errors_as_answered(app)
    app.add_middleware(JsonBodyLimitMiddleware)  # inside: refusals get a request id and a metric
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health_router)
