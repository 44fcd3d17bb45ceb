"""Form bodies where the original API took them: DRF's default parsers accept JSON,
``application/x-www-form-urlencoded`` and ``multipart/form-data`` alike.

A route built with ``FormBodyRoute`` turns a form body into the JSON object of its text fields
(a repeated field keeps its last value, as Django's ``QueryDict.get``; file parts are ignored)
before FastAPI reads the body, so validation, error shapes and JSON limits stay the ones of the
JSON path: there is one way a body is validated, whatever its encoding.
"""

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message

FORM_MEDIA_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
#: A credentials or rating form has a handful of fields; far fewer than a flood.
MAX_FORM_FIELDS = 50
MAX_FORM_FILES = 4


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def form_as_json(request: Request) -> Request:
    """``request`` with its form body replaced by the JSON object of its text fields."""
    form = await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS)
    try:
        fields = {name: value for name, value in form.multi_items() if isinstance(value, str)}
    finally:
        await form.close()
    body = json.dumps(fields).encode()
    headers = [
        (name, value)
        for name, value in request.scope["headers"]
        if name not in (b"content-type", b"content-length")
    ]
    headers += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({**request.scope, "headers": headers}, receive)


class FormBodyRoute(APIRoute):
    """A route whose JSON body may also come as a form (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            if media_type(request) in FORM_MEDIA_TYPES:
                request = await form_as_json(request)
            return await handler(request)

        return handle
