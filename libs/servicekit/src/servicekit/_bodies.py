"""Limits on JSON request bodies, checked before any route parses them: size and nesting depth.

Python's JSON parser recurses once per level, so a body nested 20,000 deep raised
``RecursionError`` inside the route and answered 500 (issue 16 row 6). No API of the platform
takes more than a few levels or more than a few kilobytes of JSON (images are multipart uploads,
which this does not read), so both limits are generous and fixed. Too deep is a 400 (a parse
error); too large is a 413, as the platform already answers an upload over its limit.

The depth is found without parsing: brackets inside strings are dropped first, and only a body
with more opening brackets than the limit is scanned at all, so ordinary bodies cost one regular
expression pass.
"""

import re

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit._errors import error_body

MAX_JSON_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 64

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = re.compile(rb"[^\[\]{}]+")


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when arrays and objects nest deeper than ``limit`` (brackets in strings ignored)."""
    brackets = _NOT_BRACKETS.sub(b"", _STRINGS.sub(b"", body))
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    depth = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _is_json(scope: Scope) -> bool:
    """What FastAPI will parse as JSON: a JSON media type, or none declared at all."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type: bytes = value.split(b";", 1)[0].strip().lower()
            return media_type == b"application/json" or media_type.endswith(b"+json")
    return True


class JsonBodyLimitMiddleware:
    """Reads a JSON body whole (at most ``MAX_JSON_BYTES``), checks it, then replays it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_JSON_BYTES:
                detail = f"Request body exceeds {MAX_JSON_BYTES} bytes."
                await _refuse(413, detail, "payload_too_large", scope, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if json_depth_exceeds(body):
            detail = f"JSON nested deeper than {MAX_JSON_DEPTH} levels."
            await _refuse(400, detail, "parse_error", scope, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: a disconnect, when it comes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _refuse(status: int, detail: str, code: str, scope: Scope, send: Send) -> None:
    response = JSONResponse(error_body(detail, code), status)

    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    await response(scope, nothing, send)
