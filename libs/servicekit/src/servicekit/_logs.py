"""Logs: one JSON object per line in production, readable lines in development.

Every line says which service wrote it and, where they apply, the request id (from the gateway's
``X-Request-Id`` or made by ``servicekit._http``), the correlation id and event id of the event
being handled (``log_context``) and the OpenTelemetry trace and span ids, so one ``grep`` of a
trace id finds every line a request caused in every service. The context lives in contextvars:
it follows each request and each consumed message through ``await`` and ``create_task``.

Only stdlib ``logging``: libraries' loggers (uvicorn, aio-pika, SQLAlchemy) propagate to the root
handler installed here and come out in the same format (uvicorn's ``color_message``, the same
text with terminal colour codes, is left out).

A server that is down makes every retry loop fail the same way every second; with a traceback
each, one PostgreSQL outage wrote hundreds of lines a second. ``RepeatedFailures`` writes a
connection failure as one line with the error's own message and no traceback, then counts the
same failure from the same place instead of writing it, and writes it again once a minute with
how many times it happened meanwhile (``repeated``).
"""

import contextlib
import contextvars
import json as jsonlib
import logging
import socket
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

from opentelemetry import trace

#: The id of the HTTP request being served (set by the gateway, or made in ``servicekit._http``).
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

_fields_var: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "log_fields", default=MappingProxyType({})
)

#: Attributes every ``LogRecord`` has; anything else on a record came from ``extra=``. Also
#: uvicorn's ``color_message``: the message again, with ANSI colour codes.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName", "color_message"}

#: Seconds during which the same connection failure from the same place is counted, not written.
REPEAT_WINDOW = 60.0
#: Exceptions (by class name, from the database and broker clients) that mean "cannot reach it".
_CONNECTION_ERROR_NAMES = frozenset(
    {"OperationalError", "InterfaceError", "AMQPConnectionError", "ConnectionClosed"}
)


def connection_error(exc_info: object) -> BaseException | None:
    """The deepest exception in the chain that says a server could not be reached, if any."""
    if not isinstance(exc_info, tuple) or len(exc_info) != 3:
        return None
    found = None
    error: BaseException | None = exc_info[1]
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ConnectionError | TimeoutError | socket.gaierror) or (
            type(error).__name__ in _CONNECTION_ERROR_NAMES
        ):
            found = error
        error = error.__cause__ or error.__context__
    return found


class RepeatedFailures(logging.Filter):
    """One line per connection failure and place, then a count once per ``window`` seconds."""

    def __init__(self, window: float = REPEAT_WINDOW) -> None:
        super().__init__()
        self.window = window
        #: (logger, message, error) -> (when it was last written, repeats not written since)
        self._written: dict[tuple[str, str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        error = connection_error(record.exc_info)
        if error is None:
            return True
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        summary = f"{type(error).__name__}: {text}" if text else type(error).__name__
        record.error = summary
        record.exc_info = None
        record.exc_text = None
        key = (record.name, str(record.msg), summary)
        last = self._written.get(key)
        if last is not None and record.created - last[0] < self.window:
            self._written[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.repeated = last[1]
        if len(self._written) > 1000:  # a bound, should errors ever carry unique text
            self._written.clear()
        self._written[key] = (record.created, 0)
        return True


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (``None`` values are left out) to every log line written inside."""
    added = {key: value for key, value in fields.items() if value is not None}
    token = _fields_var.set(MappingProxyType({**_fields_var.get(), **added}))
    try:
        yield
    finally:
        _fields_var.reset(token)


def context_fields() -> dict[str, Any]:
    """The request id, ``log_context`` fields and trace ids in force right now."""
    fields: dict[str, Any] = {}
    request_id = request_id_var.get()
    if request_id is not None:
        fields["request_id"] = request_id
    fields.update(_fields_var.get())
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        fields["trace_id"] = trace.format_trace_id(span_context.trace_id)
        fields["span_id"] = trace.format_span_id(span_context.span_id)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp, level, service, logger, message, context."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _timestamp(record),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(context_fields())
        entry.update(_extra(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return jsonlib.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``09:01:03.123 INFO  recipes.service  message  key=value …`` for a terminal."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        fields = {**context_fields(), **_extra(record)}
        # A trace id is 32 characters of noise on a terminal; its first 8 are enough to grep.
        if "trace_id" in fields:
            fields["trace_id"] = fields["trace_id"][:8]
            fields.pop("span_id", None)
        line = (
            f"{_timestamp(record)[11:23]} {record.levelname:<7} {self.service} "
            f"{record.name}: {record.getMessage()}"
        )
        if fields:
            line += "  " + " ".join(f"{key}={value}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def configure_logging(
    service: str, *, level: str = "INFO", json: bool = True, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to ``stream`` (stdout) as JSON lines, or readable text.

    Replaces what an earlier call (or ``logging.basicConfig``) installed on the root logger, so
    calling it again is safe. Run uvicorn with ``log_config=None`` so its loggers propagate here.
    """
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(service) if json else TextFormatter(service))
    handler.addFilter(RepeatedFailures())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
    }
