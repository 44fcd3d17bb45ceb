"""What every service's FastAPI app gets: errors, request ids, HTTP metrics, health routes."""

import time
import uuid
from collections.abc import MutableMapping
from typing import Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.errors import install_error_handlers
from servicekit.health import router as health_router
from servicekit.logs import request_id_var as request_id_var
from servicekit.metrics import HTTP_LATENCY, HTTP_REQUESTS
from servicekit.tracing import TRACER, extract_context

REQUEST_ID_HEADER = "x-request-id"
#: Probes and scrapes: no span for them, they would bury the requests worth tracing.
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
        request_id = incoming[:200] or uuid.uuid4().hex
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

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(scope["method"], path, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], path).observe(time.perf_counter() - started)
            if span is not None:
                _describe_span(span, scope["method"], path, status)


def _describe_span(span: Span, method: str, route: str, status: int) -> None:
    """Name the server span after the route template once routing has found it."""
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(StatusCode.ERROR)


def install_http_basics(app: FastAPI) -> None:
    """Error handlers, request-id and metrics middleware, ``/healthz`` ``/readyz`` ``/metrics``."""
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health_router)
