"""One trace from an HTTP request through the outbox, the broker and two consumers (issue 11)."""

import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from contracts import RecipeDeleted, UserDeleted
from servicekit._bus import RetryPolicy
from servicekit._consumer import Consumer, EventContext
from servicekit._db import SessionMaker
from servicekit._http import HTTP_TELEMETRY, install_http_basics
from servicekit._logs import JsonFormatter
from servicekit._outbox import add_event
from servicekit._runtime import Messaging
from servicekit._tracing import capture_spans
from servicekit.testing import eventually

from .helpers import deleted

pytestmark = pytest.mark.integration

FAST = RetryPolicy(delays=(0.05, 0.1))
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
GATEWAY_SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{GATEWAY_SPAN_ID}-01"
REQUEST_ID = "req-trace-propagation"

log = logging.getLogger("test.trace")


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = capture_spans()
    exporter.clear()
    return exporter


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    yield stream
    log.removeHandler(handler)


def recipes_app(session_maker: SessionMaker) -> FastAPI:
    app = FastAPI(telemetry=HTTP_TELEMETRY)
    install_http_basics(app)

    @app.delete("/recipes/{recipe_id}", status_code=204)
    async def delete_recipe(recipe_id: int) -> None:
        async with session_maker() as session, session.begin():
            await add_event(session, deleted(recipe_id), producer="recipes")
        log.info("recipe deleted")

    return app


@contextlib.asynccontextmanager
async def running(messaging: Messaging) -> AsyncIterator[None]:
    await messaging.start()
    try:

        async def attached() -> bool:
            return all(consumer.is_attached for consumer in messaging.consumers)

        await eventually(attached)
        yield
    finally:
        await messaging.stop()


def chain(first: Consumer, second: Consumer, handled: list[str], *, fail_once: bool) -> None:
    """``first`` turns a recipe deletion into a user deletion; ``second`` handles that."""
    failures = [RuntimeError("flaky")] if fail_once else []

    async def on_recipe_deleted(ctx: EventContext, event: RecipeDeleted) -> None:
        log.info("recipe %s gone; announcing its seller", event.recipe_id)
        if failures:
            raise failures.pop()
        await ctx.publish(
            UserDeleted(
                user_id=event.seller_id, username="s", version=1, deleted_at=datetime.now(UTC)
            )
        )

    async def on_user_deleted(ctx: EventContext, event: UserDeleted) -> None:
        log.info("user %s gone", event.user_id)
        handled.append(str(ctx.envelope.event_id))

    first.on(RecipeDeleted, on_recipe_deleted)
    second.on(UserDeleted, on_user_deleted)


def by_name(spans: Sequence[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def ancestors(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    index = {span_id(s): s for s in spans}
    found: list[ReadableSpan] = []
    while (parent := index.get(parent_id(span) or 0)) is not None:
        found.append(parent)
        span = parent
    return found


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize("fail_once", [False, True], ids=["first-try", "after-a-retry"])
async def test_one_trace_from_request_through_broker_to_the_next_hop(
    session_maker: SessionMaker,
    clean_database: str,
    amqp_url: str,
    spans: InMemorySpanExporter,
    log_lines: io.StringIO,
    fail_once: bool,
) -> None:
    first = Consumer(queue="first.events", producer="first", session_maker=session_maker)
    second = Consumer(queue="second.events", producer="second", session_maker=session_maker)
    first.retry_policy = second.retry_policy = FAST
    handled: list[str] = []
    chain(first, second, handled, fail_once=fail_once)
    messaging = Messaging(
        amqp_url=amqp_url,
        database_url=clean_database,
        session_maker=session_maker,
        consumers=[first, second],
        poll_interval=0.1,
    )
    async with running(messaging):
        transport = httpx.ASGITransport(app=recipes_app(session_maker))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.delete(
                "/recipes/7", headers={"traceparent": TRACEPARENT, "x-request-id": REQUEST_ID}
            )
        assert response.status_code == 204

        async def second_hop_finished() -> bool:
            return "process user.deleted" in by_name(spans.get_finished_spans())

        await eventually(second_hop_finished)
    assert len(handled) == 1

    finished = spans.get_finished_spans()
    assert {trace.format_trace_id(s.context.trace_id) for s in finished if s.context} == {TRACE_ID}
    named = by_name(finished)
    [server] = [s for s in finished if s.kind is SpanKind.SERVER]
    assert server.name == "DELETE /recipes/{recipe_id}"
    assert parent_id(server) == int(GATEWAY_SPAN_ID, 16)
    [create_recipe_deleted] = named["create recipe.deleted"]
    assert server in ancestors(create_recipe_deleted, finished)
    attempts = named["process recipe.deleted"]
    assert len(attempts) == (2 if fail_once else 1)
    for attempt in attempts:
        assert attempt.kind is SpanKind.CONSUMER
        assert parent_id(attempt) == span_id(create_recipe_deleted)
    [create_user_deleted] = named["create user.deleted"]
    assert parent_id(create_user_deleted) == span_id(attempts[-1])
    [process_user_deleted] = named["process user.deleted"]
    assert parent_id(process_user_deleted) == span_id(create_user_deleted)

    lines = parsed(log_lines)
    assert [line["message"] for line in lines] == [
        "recipe deleted",
        *["recipe 7 gone; announcing its seller"] * len(attempts),
        "user 1 gone",
    ]
    assert {line["trace_id"] for line in lines} == {TRACE_ID}
    request_line, *handler_lines = lines
    assert request_line["request_id"] == REQUEST_ID
    for line in handler_lines:
        # The request id became the correlation id of every event the request caused.
        assert line["correlation_id"] == REQUEST_ID
        assert line["event_id"]
        assert "request_id" not in line
    assert handler_lines[-1]["event_id"] == handled[0]
    assert handler_lines[0]["span_id"] == trace.format_span_id(span_id(attempts[0]))
