import subprocess
import sys

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from servicekit._errors import NotFound
from servicekit._http import HTTP_TELEMETRY, install_http_basics
from servicekit._tracing import (
    capture_spans,
    current_trace_id,
    exporters_from_env,
    extract_context,
    inject_headers,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = capture_spans()
    exporter.clear()
    return exporter


OFF_BY_DEFAULT = """
from opentelemetry import trace
from servicekit._tracing import TRACER, configure_tracing
assert configure_tracing("recipes", environ={}) is None
assert configure_tracing("recipes", environ={"OTEL_TRACES_EXPORTER": "none"}) is None
disabled = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}
assert configure_tracing("recipes", environ=disabled) is None
with TRACER.start_as_current_span("work") as span:
    assert not span.is_recording()
print("off")
"""


def test_tracing_is_off_unless_the_environment_asks() -> None:
    # A process of its own: this one has a tracer provider installed by capture_spans().
    result = subprocess.run(
        [sys.executable, "-c", OFF_BY_DEFAULT], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout) == (0, "off\n"), result.stderr
    assert exporters_from_env({}) == []
    assert exporters_from_env({"OTEL_TRACES_EXPORTER": "none"}) == []


CONFIGURED_TWICE = """
from servicekit._tracing import TRACER, configure_tracing
env = {"OTEL_TRACES_EXPORTER": "console"}
provider = configure_tracing("recipes", environ=env)
assert provider is not None
assert configure_tracing("recipes", environ=env) is provider
with TRACER.start_as_current_span("once"):
    pass
provider.shutdown()
"""


def test_configuring_twice_from_the_environment_exports_each_span_once() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CONFIGURED_TWICE], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"name": "once"') == 1


def test_exporters_named_by_otel_traces_exporter() -> None:
    chosen = exporters_from_env({"OTEL_TRACES_EXPORTER": "otlp, console"})
    assert [type(e) for e in chosen] == [OTLPSpanExporter, ConsoleSpanExporter]
    with pytest.raises(ValueError, match="zipkin"):
        exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_headers_carry_the_trace_to_the_next_hop() -> None:
    recorded = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(recorded))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("producer"):
        headers = inject_headers()
    assert set(headers) >= {"traceparent"}
    with tracer.start_as_current_span("consumer", context=extract_context(headers)):
        trace_id = current_trace_id()
    producer, consumer = recorded.get_finished_spans()
    assert producer.context is not None
    assert trace_id == trace.format_trace_id(producer.context.trace_id)
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id


def test_amqp_headers_may_arrive_as_bytes_and_in_any_case() -> None:
    context = extract_context({"TraceParent": TRACEPARENT.encode(), "x-attempt": 2})
    span_context = trace.get_current_span(context).get_span_context()
    assert trace.format_trace_id(span_context.trace_id) == TRACE_ID
    assert trace.format_span_id(span_context.span_id) == PARENT_SPAN_ID


def test_no_headers_start_a_new_trace() -> None:
    for headers in (None, {}, {"traceparent": "garbage"}):
        context = extract_context(headers)
        assert not trace.get_current_span(context).get_span_context().is_valid


def test_without_the_sdk_the_incoming_trace_still_passes_through() -> None:
    """Tracing off: no span is recorded, yet logs and the next hop keep the caller's trace."""
    tracer = trace.NoOpTracer()
    incoming = extract_context({"traceparent": TRACEPARENT})
    with tracer.start_as_current_span("work", context=incoming):
        assert current_trace_id() == TRACE_ID
        assert inject_headers()["traceparent"] == TRACEPARENT


def app_with_routes(*, native_telemetry: bool) -> FastAPI:
    app = FastAPI(telemetry=HTTP_TELEMETRY if native_telemetry else {"tracing": False})
    install_http_basics(app)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, str | None]:
        if item_id == 0:
            raise NotFound("no such item")
        return {"trace_id": current_trace_id()}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    return app


def server_spans(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]


# FastAPI's own telemetry makes the server span when it can; the middleware makes it otherwise.
both_span_makers = pytest.mark.parametrize("native", [True, False], ids=["fastapi", "middleware"])


@both_span_makers
async def test_a_request_is_one_server_span_continuing_the_callers_trace(
    spans: InMemorySpanExporter, native: bool
) -> None:
    transport = httpx.ASGITransport(app=app_with_routes(native_telemetry=native))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/items/5", headers={"traceparent": TRACEPARENT})
        missing = await client.get("/items/0")
        await client.get("/healthz")
    assert response.json() == {"trace_id": TRACE_ID}
    served, not_found = server_spans(spans)
    assert served.name == "GET /items/{item_id}"
    assert served.parent is not None
    assert trace.format_span_id(served.parent.span_id) == PARENT_SPAN_ID
    assert served.attributes is not None
    assert served.attributes["http.response.status_code"] == 200
    assert served.attributes["http.request.id"] == response.headers["x-request-id"]
    assert not_found.parent is None
    assert not_found.context is not None
    assert trace.format_trace_id(not_found.context.trace_id) != TRACE_ID
    assert not_found.attributes is not None
    assert not_found.attributes["http.response.status_code"] == missing.status_code == 404
    assert not_found.status.status_code is StatusCode.UNSET


@both_span_makers
async def test_a_server_error_marks_the_span_failed(
    spans: InMemorySpanExporter, native: bool
) -> None:
    app = app_with_routes(native_telemetry=native)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    [span] = server_spans(spans)
    assert span.name == "GET /boom"
    assert span.status.status_code is StatusCode.ERROR
