"""One trace id from the gateway to the recipes worker applying the resized image (issue 11).

A seller's recipe with a JPEG goes in through nginx with a W3C ``traceparent``, as a browser or
an edge proxy would send it. The recipes API writes ``recipe.created`` to its outbox, the media
worker resizes the image and announces ``recipe.image_ready`` through its own outbox, and the
recipes worker applies it. Every span of that chain, and every log line written while serving
the request or handling its events, must carry the trace id the client sent.
"""

import io
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from observability.recipe_flow import (
    RecipeFlow,
)
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from servicekit._logs import JsonFormatter
from servicekit._tracing import capture_spans
from servicekit.testing import eventually

pytestmark = pytest.mark.integration
#: ``recipe_flow`` and the fixtures it needs (not a conftest.py: see that module).
pytest_plugins = ["observability.flow_fixtures"]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
EDGE_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{EDGE_SPAN_ID}-01"
REQUEST_ID = "obs-trace-recipe-1"
#: Loggers whose lines the flow writes: ours, uvicorn's access line, SQLAlchemy's statements
#: (the happy path logs nothing else, and a check of no lines proves nothing).
CAPTURED_LOGGERS = ("recipes", "media", "servicekit", "uvicorn.access", "sqlalchemy.engine")


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = capture_spans()
    exporter.clear()
    return exporter


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """JSON lines (servicekit's formatter) of every logger the services write through."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("observability-test"))
    root = logging.getLogger()
    root.addHandler(handler)
    levels = {name: logging.getLogger(name).level for name in CAPTURED_LOGGERS}
    for name in CAPTURED_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def trace_id_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return trace.format_trace_id(span.context.trace_id)


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def only(spans: Sequence[ReadableSpan], name: str, kind: SpanKind) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.kind is kind]
    assert len(found) == 1, f"{name}: {[s.name for s in spans]}"
    return found[0]


def descends_from(
    span: ReadableSpan, ancestor: ReadableSpan, spans: Sequence[ReadableSpan]
) -> bool:
    index = {span_id(s): s for s in spans}
    current: ReadableSpan | None = span
    while current is not None:
        if current is ancestor:
            return True
        current = index.get(parent_id(current) or 0)
    return False


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def run_recipe_creation(flow: RecipeFlow, spans: InMemorySpanExporter) -> list[ReadableSpan]:
    """POST a recipe with the edge's trace context; return the spans once its image is applied."""
    created = await flow.create_recipe(
        headers={"traceparent": TRACEPARENT, "X-Request-ID": REQUEST_ID}
    )
    assert created["image_status"] == "pending"
    await flow.wait_until_image_ready(created["id"])

    async def image_ready_handled() -> bool:
        # The GET sees the commit a moment before the consumer span ends (after its ack).
        return any(s.name == "process recipe.image_ready" for s in spans.get_finished_spans())

    await eventually(image_ready_handled, what="the recipes worker's consumer span")
    return list(spans.get_finished_spans())


async def test_one_trace_from_the_gateway_to_the_applied_image(
    recipe_flow: RecipeFlow, spans: InMemorySpanExporter, log_lines: io.StringIO
) -> None:
    finished = await run_recipe_creation(recipe_flow, spans)

    server = only(finished, "POST /api/recipes/", SpanKind.SERVER)
    assert parent_id(server) == int(EDGE_SPAN_ID, 16)
    assert server.attributes is not None
    assert server.attributes["http.request.id"] == REQUEST_ID
    announced = only(finished, "create recipe.created", SpanKind.PRODUCER)
    resized = only(finished, "process recipe.created", SpanKind.CONSUMER)
    ready = only(finished, "create recipe.image_ready", SpanKind.PRODUCER)
    applied = only(finished, "process recipe.image_ready", SpanKind.CONSUMER)
    chain = [server, announced, resized, ready, applied]
    assert [trace_id_of(span) for span in chain] == [TRACE_ID] * len(chain)
    assert descends_from(announced, server, finished)
    assert parent_id(resized) == span_id(announced)
    assert descends_from(ready, resized, finished)
    assert parent_id(applied) == span_id(ready)
    assert resized.attributes is not None and applied.attributes is not None
    assert resized.attributes["messaging.destination.name"] == "media.events"
    assert applied.attributes["messaging.destination.name"] == "recipes.events"
    # Every span of the flow is in the trace; the others are the test's polling GETs.
    elsewhere = {
        s.name for s in finished if trace_id_of(s) != TRACE_ID and s.kind is SpanKind.SERVER
    }
    assert elsewhere <= {"GET /api/recipes/{recipe_id}/"}

    lines = parsed(log_lines)
    # The flow's lines, found without looking at trace ids: the request's (its request id) and
    # the handlers' of every event it caused (the request id became their correlation id).
    flow = [
        line for line in lines if REQUEST_ID in (line.get("request_id"), line.get("correlation_id"))
    ]
    assert {line.get("trace_id") for line in flow} == {TRACE_ID}
    assert [line for line in lines if line.get("trace_id") == TRACE_ID] == flow
    hops = {line.get("queue", "request") for line in flow}
    assert hops == {"request", "media.events", "recipes.events"}
    access = [line["message"] for line in flow if line["logger"] == "uvicorn.access"]
    # The upload itself, and the media worker fetching the original it announced.
    assert len(access) == 2
    assert '"POST /api/recipes/ HTTP/1.1" 201' in access[0]
    assert '"GET /internal/images/' in access[1] and access[1].endswith(" 200")
    if recipe_flow.gateway is not None:
        # The request did come through nginx, which kept the client's request id.
        assert f"rid={REQUEST_ID}" in recipe_flow.gateway.access_log.read_text()


async def test_the_download_of_the_original_stays_in_the_trace(
    recipe_flow: RecipeFlow, spans: InMemorySpanExporter
) -> None:
    finished = await run_recipe_creation(recipe_flow, spans)

    download = only(finished, "GET /internal/images/{recipe_id}/{image_version}", SpanKind.SERVER)
    assert trace_id_of(download) == TRACE_ID
    assert descends_from(
        download, only(finished, "process recipe.created", SpanKind.CONSUMER), finished
    )
