import io
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from servicekit._http import request_id_var as http_request_id_var
from servicekit._logs import (
    JsonFormatter,
    RepeatedFailures,
    TextFormatter,
    configure_logging,
    log_context,
    request_id_var,
)


@pytest.fixture
def output() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing JSON lines into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("recipes"))
    logger = logging.getLogger("test.logs.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_the_standard_fields(
    output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = output
    logger.warning("recipe %s saved", 7)
    [entry] = lines(stream)
    assert entry["message"] == "recipe 7 saved"
    assert entry["level"] == "warning"
    assert entry["service"] == "recipes"
    assert entry["logger"] == "test.logs.json"
    assert entry["timestamp"].endswith("Z")
    assert "T" in entry["timestamp"]
    for absent in ("request_id", "correlation_id", "event_id", "trace_id", "exception"):
        assert absent not in entry


def test_context_fields_apply_inside_the_block_only(
    output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = output
    token = request_id_var.set("req-1")
    try:
        with log_context(event_id="e-1", correlation_id="c-1", ignored=None):
            with log_context(event_id="e-2"):
                logger.info("inner")
            logger.info("outer")
    finally:
        request_id_var.reset(token)
    logger.info("after")
    inner, outer, after = lines(stream)
    assert inner | {"request_id": "req-1", "event_id": "e-2", "correlation_id": "c-1"} == inner
    assert (outer["event_id"], outer["correlation_id"]) == ("e-1", "c-1")
    assert "ignored" not in outer
    assert {"request_id", "event_id", "correlation_id"}.isdisjoint(after)


def test_the_http_request_id_is_the_one_logs_read() -> None:
    assert http_request_id_var is request_id_var


def test_trace_and_span_ids_of_the_current_span(
    output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = output
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logger.info("traced")
    [entry] = lines(stream)
    context = span.get_span_context()
    assert entry["trace_id"] == trace.format_trace_id(context.trace_id)
    assert entry["span_id"] == trace.format_span_id(context.span_id)


def test_exception_and_extra_fields(output: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = output
    try:
        raise ValueError("bad image")
    except ValueError:
        logger.exception("processing failed", extra={"recipe_id": 3})
    [entry] = lines(stream)
    assert entry["level"] == "error"
    assert entry["recipe_id"] == 3
    assert "ValueError: bad image" in entry["exception"]
    assert "Traceback" in entry["exception"]


def test_text_format_is_readable_and_carries_the_context() -> None:
    record = logging.LogRecord("recipes.api", logging.INFO, __file__, 1, "saved", None, None)
    with log_context(event_id="e-9"):
        line = TextFormatter("recipes").format(record)
    assert "INFO" in line
    assert "recipes.api: saved" in line
    assert "event_id=e-9" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, restored afterwards (pytest's capture handlers live there)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("as_json", [True, False])
def test_configure_logging_routes_every_logger_through_one_handler(
    root_logger: logging.Logger, as_json: bool
) -> None:
    first = io.StringIO()
    configure_logging("media", level="info", json=as_json, stream=first)
    stream = io.StringIO()
    configure_logging("media", level="warning", json=as_json, stream=stream)
    library = logging.getLogger("some.library")
    library.info("dropped: below the level")
    library.warning("kept")
    assert first.getvalue() == ""
    [line] = stream.getvalue().splitlines()
    if as_json:
        entry = json.loads(line)
        assert (entry["service"], entry["logger"], entry["message"]) == (
            "media",
            "some.library",
            "kept",
        )
    else:
        assert "media some.library: kept" in line
    assert len(root_logger.handlers) == 1


def test_uvicorns_colour_codes_stay_out_of_json_lines(
    output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = output
    # What uvicorn passes with its start-up lines.
    logger.info("Started server process [%d]", 7, extra={"color_message": "\x1b[36m%d\x1b[0m"})

    [entry] = lines(stream)
    assert entry["message"] == "Started server process [7]"
    assert "color_message" not in entry
    assert "\x1b" not in stream.getvalue()


def _refused() -> BaseException:
    """A real failure to reach PostgreSQL: a port nothing listens on (the socket's own, closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/x", connect_timeout=5)
    except psycopg.OperationalError as error:
        try:
            raise RuntimeError("outbox relay round failed") from error
        except RuntimeError as wrapped:
            return wrapped
    raise AssertionError("connected to a closed port")


def test_an_outage_is_one_line_then_a_count_per_minute() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("auth"))
    handler.addFilter(RepeatedFailures(window=60.0))
    logger = logging.getLogger("test.logs.outage")
    error = _refused()

    def retry_failed_at(second: float) -> None:
        record = logger.makeRecord(
            logger.name,
            logging.WARNING,
            __file__,
            1,
            "outbox relay failed; retrying",
            (),
            (type(error), error, error.__traceback__),
        )
        record.created = 1_000_000.0 + second
        handler.handle(record)

    for second in range(61):  # a retry every second for a minute, then one more
        retry_failed_at(second)

    first, after_a_minute = lines(stream)
    assert first["message"] == after_a_minute["message"] == "outbox relay failed; retrying"
    assert first["error"].startswith("OperationalError: connection failed")
    assert "exception" not in first and "Traceback" not in stream.getvalue()
    assert "repeated" not in first
    assert after_a_minute["repeated"] == 59


def test_other_errors_keep_their_traceback() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("auth"))
    handler.addFilter(RepeatedFailures())
    logger = logging.getLogger("test.logs.bug")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for _ in range(2):
            try:
                int("not a number")
            except ValueError:
                logger.exception("handler crashed")
    finally:
        logger.removeHandler(handler)

    assert [("Traceback" in entry["exception"]) for entry in lines(stream)] == [True, True]
