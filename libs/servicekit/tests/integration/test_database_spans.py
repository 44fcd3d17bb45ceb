"""With tracing on, SQL statements are client spans inside the trace that ran them."""

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import text

from servicekit._db import create_engine
from servicekit._tracing import SQLALCHEMY_INSTRUMENTATION, capture_spans

pytestmark = pytest.mark.integration


async def test_statements_are_spans_under_the_current_span(clean_database: str) -> None:
    # The engine exists before tracing is configured, as servicekit._db's imports do in services.
    engine = create_engine(clean_database, pool_size=1)
    spans = capture_spans()
    spans.clear()
    try:
        with trace.get_tracer("test").start_as_current_span("handle request") as parent:
            async with engine.connect() as conn:
                assert await conn.scalar(text("SELECT 40 + 2")) == 42
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 'outside any trace'"))
    finally:
        await engine.dispose()

    statements = [
        s
        for s in spans.get_finished_spans()
        if s.instrumentation_scope and s.instrumentation_scope.name == SQLALCHEMY_INSTRUMENTATION
    ]
    (select,) = statements
    assert select.kind is SpanKind.CLIENT
    assert select.parent is not None
    assert select.parent.span_id == parent.get_span_context().span_id
    assert select.attributes is not None
    assert "SELECT 40 + 2" in str(select.attributes.get("db.statement"))
    assert select.attributes.get("db.system") == "postgresql"
