"""Reading a recipe from a request: multipart with an optional image, or JSON.

The body is read with a size cap before it is parsed, so an oversized or endless upload is
refused (413) without being stored; the image's type comes from its magic bytes. A file that is
not an accepted image is a field error of the part it came in (``{"original_image": [...]}``,
as the original's ``ImageField``); a body of another media type is 415.
"""

import json
import sys
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import Message

from recipes.images import UploadedImage, sniff_image_type
from servicekit import ApiError

#: Room for the text fields and multipart framing on top of the image size limit.
FORM_OVERHEAD_BYTES = 1024 * 1024
IMAGE_FIELDS = ("image", "original_image")
TEXT_FIELDS = ("title", "description", "ingredients", "instructions")
#: Parts a form may have: a few more than the fields above, far fewer than a flood.
MAX_FILES = 4
MAX_FIELDS = 50


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status_code = 415
    code = "unsupported_media_type"


class MalformedBody(ApiError):
    status_code = 400
    code = "parse_error"


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge("Request body too large.")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge("Request body too large.")
        chunks.append(chunk)
    return b"".join(chunks)


class InMemoryMultiPartParser(MultiPartParser):
    """Starlette's multipart parser, keeping file parts in memory.

    The body it parses is already in memory, read under its cap: spooling an image over 1 MB to
    a temporary file (the default) would only add a write and a read of it, in a thread.
    """

    spool_max_size = sys.maxsize


def _replay(request: Request, body: bytes) -> Request:
    """A request over the same scope whose body is ``body`` (already read)."""

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


async def _parse_form(request: Request, body: bytes, media_type: str) -> FormData:
    if media_type != "multipart/form-data":
        return await _replay(request, body).form(max_files=MAX_FILES, max_fields=MAX_FIELDS)

    async def stream() -> AsyncGenerator[bytes]:
        yield body

    parser = InMemoryMultiPartParser(
        request.headers, stream(), max_files=MAX_FILES, max_fields=MAX_FIELDS
    )
    return await parser.parse()


#: Django's ``ImageField`` message, which clients of the original show.
NOT_AN_IMAGE = (
    "Upload a valid image. The file you uploaded was either not an image or a corrupted image."
)


async def _image_of(name: str, upload: UploadFile, max_bytes: int) -> UploadedImage | None:
    data = await upload.read(max_bytes + 1)
    if not data and not upload.filename:
        return None  # an empty file input sent by a browser form
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"The image is larger than {max_bytes} bytes.")
    content_type = sniff_image_type(data)
    if content_type is None:
        raise RequestValidationError(
            [{"loc": ("body", name), "msg": NOT_AN_IMAGE, "type": "image"}]
        )
    return UploadedImage(data=data, content_type=content_type)


async def _fields_and_image(
    form: FormData, max_image_bytes: int
) -> tuple[dict[str, Any], UploadedImage | None]:
    fields = {k: v for k, v in form.items() if k in TEXT_FIELDS and isinstance(v, str)}
    for name in IMAGE_FIELDS:
        upload = form.get(name)
        if isinstance(upload, UploadFile):
            return fields, await _image_of(name, upload, max_image_bytes)
    return fields, None


async def read_recipe_input(
    request: Request, *, max_image_bytes: int
) -> tuple[dict[str, Any], UploadedImage | None]:
    """The recipe fields and the image (if any) of a JSON or form request."""
    body = await _read_capped(request, max_image_bytes + FORM_OVERHEAD_BYTES)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await _parse_form(request, body, media_type)
            try:
                return await _fields_and_image(form, max_image_bytes)
            finally:
                await form.close()
        except MultiPartException as exc:
            raise MalformedBody(f"Multipart form parse error - {exc.message}") from exc
    if media_type in ("application/json", "") or media_type.endswith("+json"):
        try:
            parsed = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedBody(f"JSON parse error - {exc}") from exc
        if not isinstance(parsed, dict):
            raise MalformedBody("Expected a JSON object.")
        return parsed, None
    raise UnsupportedMediaType(f'Unsupported media type "{media_type}" in request.')
