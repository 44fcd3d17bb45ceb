"""One JSON error shape for every service: ``{"detail": ..., "code": ...}``.

Validation errors keep the original Django REST Framework shape as well (``{"field": ["msg"]}``),
because the original backend's clients read it; ``detail`` and ``code`` sit beside the fields.
"""

import logging
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, RootModel
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
}


class ApiError(Exception):
    """A domain error that maps to one HTTP status; raise it from ``service.py``."""

    status_code = 400
    code = "invalid"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.code
        self.status_code = status_code or self.status_code
        self.headers = headers


class NotAuthenticated(ApiError):
    status_code = 401
    code = "not_authenticated"


class PermissionDenied(ApiError):
    status_code = 403
    code = "permission_denied"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class Conflict(ApiError):
    status_code = 409
    code = "conflict"


class ErrorBody(BaseModel):
    """Every error's body but a 400's: ``detail`` for people, ``code`` for programs."""

    detail: str
    code: str


class InvalidInput(RootModel[dict[str, str | list[str]]]):
    """A 400's body: a list of messages per invalid field (the original backend's shape), with
    ``detail`` and ``code`` beside them where the service adds them."""


#: What each documented error status means to a client, for the OpenAPI schemas.
ERROR_DESCRIPTIONS = {
    400: "Invalid input: a list of messages per invalid field.",
    401: "No valid access token (missing, malformed, expired or forged).",
    403: "Signed in, but this role or user may not do this.",
    404: "No such resource.",
    409: "Conflicts with the current state (for example a taken username).",
    413: "The request body is too large.",
    415: "Unsupported media type.",
    429: "Too many requests (the service's or the gateway's limit); see `Retry-After`.",
    503: "A dependency (the database) is unavailable; retry after `Retry-After` seconds.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the error statuses it can answer, each with the error body."""
    return {
        status: {
            "model": InvalidInput if status == 400 else ErrorBody,
            "description": ERROR_DESCRIPTIONS[status],
        }
        for status in statuses
    }


def error_body(detail: Any, code: str) -> dict[str, Any]:
    return {"detail": detail, "code": code}


def field_errors(exc: RequestValidationError) -> dict[str, list[str]]:
    """Pydantic's errors as DRF's ``{"field": ["message", ...]}``."""
    fields: dict[str, list[str]] = {}
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
        name = ".".join(loc) or "non_field_errors"
        message = str(error.get("msg", "Invalid value."))
        if error.get("type") == "missing":
            message = "This field is required."
        fields.setdefault(name, []).append(message.removeprefix("Value error, "))
    return fields


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.detail, exc.code), exc.status_code, headers=exc.headers)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODES.get(exc.status_code, "error")
    return JSONResponse(error_body(exc.detail, code), exc.status_code, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    body: dict[str, Any] = dict(field_errors(exc))
    body.update(error_body("Invalid input.", "invalid"))
    return JSONResponse(body, 400)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database is down, restarting or out of connections: a retryable 503, not a 500."""
    logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    body = error_body("Service temporarily unavailable, try again shortly.", "unavailable")
    return JSONResponse(body, 503, headers={"Retry-After": "2"})


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body("Internal server error.", "internal_error"), 500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(sqlalchemy.exc.OperationalError, _database_unavailable)
    app.add_exception_handler(sqlalchemy.exc.TimeoutError, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)
