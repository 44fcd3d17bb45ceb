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


def _cache_headers(etag: str, *, max_age: int, private: bool) -> dict[str, str]:
    cache_control = (
        PRIVATE_CACHE_CONTROL if private else f"public, max-age={max_age}, must-revalidate"
    )
    return {"ETag": etag, "Cache-Control": cache_control, "Vary": "Authorization"}


def cacheable_json(
    request: Request, payload: BaseModel, *, max_age: int, private: bool = False
) -> Response:
    """``payload`` as JSON with a validator; 304 without a body when the client has it already."""
    body = payload.model_dump_json().encode()
    etag = _etag(body)
    headers = _cache_headers(etag, max_age=max_age, private=private)
    if _matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


#: Bump when a release changes how a versioned body is written, so that clients holding an
#: ETag of the old shape get the new body even though no data changed.
BODY_FORMAT = "1"


def versioned_etag(request: Request, version: int, *shaping: object) -> str:
    """A validator from a data version instead of the body, so it is known before the query.

    The body also depends on the URL as the client sent it (its absolute page links follow the
    gateway's forwarded headers) and on the settings that shape it (``shaping``).
    """
    headers = request.headers
    key = "\n".join(
        [
            BODY_FORMAT,
            str(version),
            str(request.url),
            headers.get("x-forwarded-proto", ""),
            headers.get("x-forwarded-host", ""),
            *map(str, shaping),
        ]
    )
    return 'W/"' + hashlib.sha256(key.encode()).hexdigest()[:40] + '"'


def client_has(request: Request, etag: str) -> bool:
    """The client named ``etag`` in If-None-Match (``*`` is left to the full response)."""
    if_none_match = request.headers.get("if-none-match", "")
    return if_none_match.strip() != "*" and _matches(if_none_match, etag)


def versioned_json(request: Request, payload: BaseModel, *, etag: str, max_age: int) -> Response:
    """Public ``payload`` as JSON under a version-derived ``etag``; 304 if the client has it."""
    headers = _cache_headers(etag, max_age=max_age, private=False)
    if _matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    return Response(payload.model_dump_json(), media_type="application/json", headers=headers)


def not_modified(etag: str, *, max_age: int) -> Response:
    return Response(status_code=304, headers=_cache_headers(etag, max_age=max_age, private=False))


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
