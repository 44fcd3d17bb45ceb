"""HTTP routes: thin — parse, call a use case in one transaction, shape the response.

Every path answers with and without its trailing slash (both are registered; no redirects).
"""

import hmac
import time
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError

from recipes import listing, ratings, service
from recipes.images import MEDIA_CREDENTIAL_HEADER, UploadedImage, image_path, signature_valid
from recipes.models import Rating, Recipe
from recipes.responses import (
    cacheable_json,
    client_has,
    not_modified,
    page_links,
    versioned_etag,
    versioned_json,
)
from recipes.schemas import (
    RateResult,
    RatingOut,
    RatingPage,
    RatingWrite,
    RecipeListQuery,
    RecipeOut,
    RecipePage,
    RecipePatch,
    RecipeWrite,
)
from recipes.settings import Settings
from recipes.uploads import read_recipe_input
from servicekit import (
    CustomerPrincipal,
    FormBodyRoute,
    OptionalPrincipal,
    PermissionDenied,
    Principal,
    SellerPrincipal,
    error_responses,
)
from servicekit.fastapi import ReadConnectionDep, SessionDep, app_state, slash_tolerant_routes

router = APIRouter(tags=["recipes"])
#: Reads answer 304 to an If-None-Match naming their current ETag.
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified: If-None-Match named the current ETag."}
}
internal_router = APIRouter(include_in_schema=False)

route = slash_tolerant_routes(router)

SettingsDep = Annotated[Settings, app_state("settings")]

#: Recipe ids and image versions are PostgreSQL integers: a larger number names nothing.
MAX_ID = 2**31 - 1


def _positive_id(text: str) -> int:
    """The id a path segment names, or RecipeNotFound: like the original's ``<int:pk>`` URL
    pattern, anything but ASCII digits (``abc``, ``-1``, ``٣``) matches no resource."""
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_ID))):
        raise service.RecipeNotFound()
    number = int(text)
    if not 1 <= number <= MAX_ID:
        raise service.RecipeNotFound()
    return number


async def recipe_id_in_range(
    recipe_id: Annotated[str, Path(description="The recipe's id (a positive integer).")],
) -> int:
    return _positive_id(recipe_id)


RecipeId = Annotated[int, Depends(recipe_id_in_range)]

_RECIPE_FORM_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "title": {"type": "string"},
                        "description": {"type": "string"},
                        "ingredients": {"type": "string"},
                        "instructions": {"type": "string"},
                        "image": {"type": "string", "format": "binary"},
                    },
                }
            },
            "application/json": {"schema": RecipeWrite.model_json_schema()},
        }
    }
}


def _signer(settings: Settings) -> service.ImageSigner:
    return service.ImageSigner(
        base_url=settings.internal_base_url,
        key=settings.signing_key,
        ttl_seconds=settings.image_url_ttl_seconds,
    )


M = TypeVar("M", bound=BaseModel)


async def _recipe_input(
    request: Request, settings: Settings, model: type[M]
) -> tuple[M, UploadedImage | None]:
    fields, image = await read_recipe_input(request, max_image_bytes=settings.max_upload_bytes)
    try:
        return model.model_validate(fields), image
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


def recipe_out(recipe: Recipe | dict[str, Any], viewer: Principal | None = None) -> RecipeOut:
    out = RecipeOut.model_validate(recipe, from_attributes=True)
    if viewer is None or viewer.user_id != out.seller_id:
        out.image_failure_reason = None
    return out


_LISTED_RECIPES = TypeAdapter(list[RecipeOut])


def rating_out(rating: Rating) -> RatingOut:
    return RatingOut.model_validate(
        {**rating.model_dump(exclude={"username"}), "user": rating.username}
    )


@route(
    "/api/recipes/",
    methods=["GET"],
    response_model=RecipePage,
    responses={**NOT_MODIFIED, **error_responses(400, 401, 404)},
    summary="List recipes",
)
async def list_recipes(
    request: Request,
    connection: ReadConnectionDep,
    settings: SettingsDep,
    query: Annotated[RecipeListQuery, Query()],
    _viewer: OptionalPrincipal,
) -> Response:
    page = listing.page_request(
        query.page,
        query.page_size,
        default_size=settings.default_page_size,
        max_size=settings.max_page_size,
    )
    # Settings that shape the body are part of its validator.
    shaping = (settings.default_page_size, settings.max_page_size, settings.popular_min_votes)
    if "if-none-match" in request.headers:
        etag = versioned_etag(request, await listing.list_version(connection), *shaping)
        if client_has(request, etag):
            return not_modified(etag, max_age=settings.cache_max_age)
    found = await listing.list_recipes(
        connection=connection, query=query, page=page, popular_min_votes=settings.popular_min_votes
    )
    page = found.page
    next_url, previous = page_links(request, page.number, has_next=page.has_next(found.total))
    body = RecipePage(
        count=found.total,
        next=next_url,
        previous=previous,
        # From dicts: pydantic reads a row mapping key by key, through a KeyError for each
        # field the list leaves out (2.5x the time for a page of 10).
        results=_LISTED_RECIPES.validate_python([dict(row) for row in found.rows]),
    )
    etag = versioned_etag(request, found.version, *shaping)
    return versioned_json(request, body, etag=etag, max_age=settings.cache_max_age)


@route(
    "/api/recipes/",
    methods=["POST"],
    status_code=201,
    response_model=RecipeOut,
    openapi_extra=_RECIPE_FORM_BODY,
    responses=error_responses(400, 401, 403, 413, 415),
    summary="Publish a recipe (seller)",
)
async def create_recipe(
    request: Request, seller: SellerPrincipal, session: SessionDep, settings: SettingsDep
) -> RecipeOut:
    fields, image = await _recipe_input(request, settings, RecipeWrite)
    async with session.begin():
        recipe = await service.create_recipe(
            session=session,
            seller=seller,
            fields=fields,
            image=image,
            signer=_signer(settings),
            publish=service.outbox_publisher(session=session),
        )
    return recipe_out(recipe, seller)


@route(
    "/api/recipes/{recipe_id}/",
    methods=["GET"],
    response_model=RecipeOut,
    responses={**NOT_MODIFIED, **error_responses(400, 401, 404)},
)
async def get_recipe(
    recipe_id: RecipeId,
    request: Request,
    connection: ReadConnectionDep,
    settings: SettingsDep,
    viewer: OptionalPrincipal,
) -> Response:
    recipe = await service.read_recipe(connection=connection, recipe_id=recipe_id)
    return cacheable_json(
        request,
        recipe_out(recipe, viewer),
        max_age=settings.cache_max_age,
        private=viewer is not None,
    )


async def _update(
    recipe_id: RecipeId,
    request: Request,
    seller: Principal,
    session: SessionDep,
    settings: Settings,
    model: type[RecipeWrite] | type[RecipePatch],
) -> RecipeOut:
    changes, image = await _recipe_input(request, settings, model)
    async with session.begin():
        recipe = await service.update_recipe(
            session=session,
            recipe_id=recipe_id,
            seller=seller,
            changes=changes,
            image=image,
            signer=_signer(settings),
            publish=service.outbox_publisher(session=session),
        )
    return recipe_out(recipe, seller)


@route(
    "/api/recipes/{recipe_id}/",
    methods=["PUT"],
    response_model=RecipeOut,
    openapi_extra=_RECIPE_FORM_BODY,
    responses=error_responses(400, 401, 403, 404, 413, 415),
)
async def replace_recipe(
    recipe_id: RecipeId,
    request: Request,
    seller: SellerPrincipal,
    session: SessionDep,
    settings: SettingsDep,
) -> RecipeOut:
    return await _update(recipe_id, request, seller, session, settings, RecipeWrite)


@route(
    "/api/recipes/{recipe_id}/",
    methods=["PATCH"],
    response_model=RecipeOut,
    openapi_extra=_RECIPE_FORM_BODY,
    responses=error_responses(400, 401, 403, 404, 413, 415),
)
async def patch_recipe(
    recipe_id: RecipeId,
    request: Request,
    seller: SellerPrincipal,
    session: SessionDep,
    settings: SettingsDep,
) -> RecipeOut:
    return await _update(recipe_id, request, seller, session, settings, RecipePatch)


@route(
    "/api/recipes/{recipe_id}/",
    methods=["DELETE"],
    status_code=204,
    response_class=Response,
    responses=error_responses(400, 401, 403, 404),
)
async def delete_recipe(
    recipe_id: RecipeId, seller: SellerPrincipal, session: SessionDep
) -> Response:
    async with session.begin():
        await service.delete_recipe(
            session=session,
            recipe_id=recipe_id,
            seller=seller,
            publish=service.outbox_publisher(session=session),
        )
    return Response(status_code=204)


@route(
    "/api/recipes/{recipe_id}/rate/",
    methods=["POST"],
    # JSON or a form, as DRF's default parsers accepted.
    route_class_override=FormBodyRoute,
    response_model=RateResult,
    responses=error_responses(400, 401, 403, 404),
    summary="Rate a recipe (customer); rating again replaces the score",
)
async def rate_recipe(
    recipe_id: RecipeId, body: RatingWrite, customer: CustomerPrincipal, session: SessionDep
) -> RateResult:
    async with session.begin():
        outcome = await ratings.rate_recipe(
            session=session,
            recipe_id=recipe_id,
            customer=customer,
            score=body.score,
            comment=body.comment,
        )
    return RateResult(
        id=outcome.rating_id,
        recipe_id=outcome.recipe_id,
        user=outcome.username,
        user_id=outcome.user_id,
        score=outcome.score,
        comment=outcome.comment,
        created_at=outcome.created_at,
        updated_at=outcome.updated_at,
        avg_rating=outcome.avg_rating,
        rating_count=outcome.rating_count,
    )


@route(
    "/api/recipes/{recipe_id}/ratings/",
    methods=["GET"],
    response_model=RatingPage,
    responses={**NOT_MODIFIED, **error_responses(400, 401, 404)},
)
async def list_ratings(
    recipe_id: RecipeId,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _viewer: OptionalPrincipal,
    page: Annotated[str | None, Query()] = None,
    page_size: Annotated[str | None, Query()] = None,
) -> Response:
    wanted = listing.page_request(
        page, page_size, default_size=settings.default_page_size, max_size=settings.max_page_size
    )
    wanted, total, rows = await ratings.list_ratings(
        session=session, recipe_id=recipe_id, page=wanted
    )
    next_url, previous = page_links(request, wanted.number, has_next=wanted.has_next(total))
    body = RatingPage(
        count=total, next=next_url, previous=previous, results=[rating_out(r) for r in rows]
    )
    return cacheable_json(request, body, max_age=settings.cache_max_age)


def _from_media(request: Request, settings: Settings) -> bool:
    """The request carries the media worker's credential (see ``recipes.images``)."""
    if settings.media_credential is None:
        return False
    presented = request.headers.get(MEDIA_CREDENTIAL_HEADER, "").encode("latin-1")
    expected = settings.media_credential.get_secret_value().encode()
    return hmac.compare_digest(presented, expected)


@internal_router.get("/internal/images/{recipe_id}/{image_version}")
async def get_original_image(
    recipe_id: RecipeId,
    request: Request,
    image_version: str,
    session: SessionDep,
    settings: SettingsDep,
    expires: str = "",
    signature: str = "",
) -> Response:
    """The stored original behind a signed reference (for the media service only)."""
    version = _positive_id(image_version)
    path = image_path(recipe_id, version)
    now = None if _from_media(request, settings) else time.time()
    if not signature_valid(path, expires, signature, settings.signing_key, now=now):
        raise PermissionDenied("Invalid or expired image link.", code="invalid_signature")
    original = await service.get_original(
        session=session, recipe_id=recipe_id, image_version=version
    )
    if original is None:
        raise service.RecipeNotFound()
    return Response(
        original.data,
        media_type=original.content_type,
        headers={"ETag": f'"{original.sha256}"', "Cache-Control": "private, no-store"},
    )
