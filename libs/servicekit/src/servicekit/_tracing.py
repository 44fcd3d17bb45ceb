"""Tracing: OpenTelemetry spans joined across services by W3C trace context.

One trace follows a request: the HTTP server span (its parent comes from the incoming
``traceparent``), a producer span for each event the request writes to the outbox (the outbox
row's headers carry ``traceparent``/``tracestate``; the relay copies them onto the AMQP message),
the consumer span that handles it (child of the producer span), and so on for every event that
handler writes to its own outbox.

Off by default: without ``configure_tracing`` (or with ``OTEL_TRACES_EXPORTER`` unset or
``none``) the OpenTelemetry API is a no-op that still passes an incoming trace context on, so
logs keep the caller's trace id and the next hop continues its trace. The standard variables
turn it on: ``OTEL_TRACES_EXPORTER`` (``otlp`` — protobuf over HTTP —, ``console``, or both,
comma-separated), ``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_TRACES_SAMPLER``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_SDK_DISABLED``. They are the one exception to "only Settings reads the environment":
the SDK itself reads them, and operators expect exactly those names.

With tracing on, every SQL statement is a client span under the request's or the handler's
span (opentelemetry-instrumentation-sqlalchemy). Its instrumentor patches
``create_async_engine`` at module level, which misses engines made through names imported
before tracing is configured (``servicekit._db`` imports it at start-up): every engine is instead
instrumented at its first connection, through a listener on all engines. A statement outside
any span (the relay's and the consumers' polling) makes no span: a root trace of one query every
second would bury the traces people look for.
"""

import functools
import os
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import UpDownCounter, get_meter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

#: The tracer servicekit's spans come from; it follows whichever provider is installed.
TRACER = trace.get_tracer("servicekit")

#: The instrumentation scope of database spans (the library that makes them).
SQLALCHEMY_INSTRUMENTATION = "opentelemetry.instrumentation.sqlalchemy"
TRACE_HEADERS = ("traceparent", "tracestate")


def exporters_from_env(environ: Mapping[str, str]) -> list[SpanExporter]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (none when unset)."""
    names = [n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "none").split(",")]
    exporters: list[SpanExporter] = []
    for name in filter(None, names):
        if name == "none":
            continue
        if name in ("otlp", "otlp_proto_http"):
            # Imported here: protobuf is slow to load and most processes trace nothing.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER: unsupported exporter {name!r}")
    return exporters


def configure_tracing(
    service: str,
    *,
    exporters: Sequence[SpanExporter] | None = None,
    environ: Mapping[str, str] | None = None,
) -> TracerProvider | None:
    """Install the SDK tracer provider if ``OTEL_*`` (or ``exporters``) ask for one.

    Returns the provider, or ``None`` when tracing stays off. The global provider can be set
    only once per process: a later call adds the ``exporters`` it is given to it, and a later
    call without them changes nothing.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider) and exporters is None:
        return provider
    chosen = list(exporters) if exporters is not None else exporters_from_env(env)
    if not chosen:
        return None
    if not isinstance(provider, TracerProvider):
        name = env.get("OTEL_SERVICE_NAME") or service
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
        trace.set_tracer_provider(provider)
    trace_database_statements(provider)
    for exporter in chosen:
        # Exporters that only write to memory or a terminal are cheap enough to call inline.
        inline = isinstance(exporter, ConsoleSpanExporter | InMemorySpanExporter)
        provider.add_span_processor(
            SimpleSpanProcessor(exporter) if inline else BatchSpanProcessor(exporter)
        )
    return provider


class _ChildSpansOnly(trace.Tracer):
    """A tracer that starts a span only under a current one (statements join traces)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start_span(
        self, name: str, context: Context | None = None, *args: Any, **kwargs: Any
    ) -> trace.Span:
        if not trace.get_current_span(context).get_span_context().is_valid:
            return trace.INVALID_SPAN
        return self._tracer.start_span(name, context, *args, **kwargs)

    def start_as_current_span(
        self, name: str, context: Context | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        if not trace.get_current_span(context).get_span_context().is_valid:
            return trace.use_span(trace.INVALID_SPAN)
        return self._tracer.start_as_current_span(name, context, *args, **kwargs)


class _StatementTracing:
    """Instruments each engine at its first connection: a listener on every ``Engine``."""

    def __init__(self) -> None:
        self.tracer: trace.Tracer | None = None
        self.connections: UpDownCounter | None = None
        self.engines: weakref.WeakSet[Engine] = weakref.WeakSet()

    def __call__(self, connection: Connection) -> None:
        engine = connection.engine
        if self.tracer is None or engine in self.engines:
            return
        self.engines.add(engine)
        EngineTracer(self.tracer, engine, self.connections)  # type: ignore[no-untyped-call]


_STATEMENTS = _StatementTracing()


def trace_database_statements(provider: TracerProvider) -> None:
    """Spans for the SQL of every engine, those made before this call included."""
    _STATEMENTS.tracer = _ChildSpansOnly(
        trace.get_tracer(SQLALCHEMY_INSTRUMENTATION, tracer_provider=provider)
    )
    _STATEMENTS.connections = get_meter(SQLALCHEMY_INSTRUMENTATION).create_up_down_counter(
        "db.client.connections.usage", unit="connections"
    )
    if not event.contains(Engine, "engine_connect", _STATEMENTS):
        event.listen(Engine, "engine_connect", _STATEMENTS)


@functools.cache
def capture_spans() -> InMemorySpanExporter:
    """For tests: record every finished span in memory (installs tracing once per process)."""
    exporter = InMemorySpanExporter()
    configure_tracing("test", exporters=[exporter], environ={})
    return exporter


def inject_headers() -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``, ``tracestate``)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, Any] | None) -> Context:
    """The trace context carried by HTTP or AMQP headers (a fresh root when there is none)."""
    carrier: dict[str, str] = {}
    for key, value in (headers or {}).items():
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str):
            carrier[key.lower()] = value
    return propagate.extract(carrier)


def record_failure(exc: BaseException) -> None:
    """Mark the current span failed by ``exc`` (for failures caught before they reach it)."""
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits, or ``None`` outside any trace."""
    span_context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None
