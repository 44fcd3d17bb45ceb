"""Public responses: conditional GET (ETag, If-None-Match → 304), Cache-Control, page links."""

import hashlib

from fastapi import Request, Response
from pydantic import BaseModel

#: Responses that depend on who asks (the owner sees more) must not be shared by caches.
PRIVATE_CACHE_CONTROL = "private, no-cache"


def _etag(body: bytes) -> str:
    return 'W/"' + hashlib.sha256(body).hexdigest()[:40] + '"'


def _matches(if_none_match: str, etag: str) -> bool:
    if if_none_match.strip() == "*":
        return True
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag.removeprefix("W/") in candidates


def cacheable_json(
    request: Request, payload: BaseModel, *, max_age: int, private: bool = False
) -> Response:
    """``payload`` as JSON with a validator; 304 without a body when the client has it already."""
    body = payload.model_dump_json().encode()
    etag = _etag(body)
    cache_control = (
        PRIVATE_CACHE_CONTROL if private else f"public, max-age={max_age}, must-revalidate"
    )
    headers = {"ETag": etag, "Cache-Control": cache_control, "Vary": "Authorization"}
    if _matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def page_url(request: Request, page: int) -> str:
    """This request's absolute URL at ``page``, as the client (behind the gateway) saw it.

    ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` come from the gateway, the only way in. Like
    DRF, the link to the first page carries no ``page`` parameter.
    """
    if page == 1:
        url = request.url.remove_query_params("page")
    else:
        url = request.url.include_query_params(page=page)
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
    host = request.headers.get("x-forwarded-host", "").split(",")[0].strip()
    if proto in ("http", "https"):
        url = url.replace(scheme=proto)
    if host:
        url = url.replace(netloc=host)
    return str(url)


def page_links(request: Request, number: int, *, has_next: bool) -> tuple[str | None, str | None]:
    """``next`` and ``previous`` of page ``number``."""
    next_url = page_url(request, number + 1) if has_next else None
    previous = page_url(request, number - 1) if number > 1 else None
    return next_url, previous
