"""The HTTP ceiling: a bare FastAPI app on a raw async psycopg pool, nothing else.

It does the same database work as the recipes API (the count, read from the same count shards
that migration 0007 keeps, and one page of the same columns, ordered the same way; one rating
upsert) without ORM, token verification, ETag or outbox, so
``recipes / bare`` is what the platform's layers cost. Configured by environment variables:
``BENCH_BARE_DSN`` (libpq URL) and ``BENCH_BARE_RATINGS_TABLE``.

    uvicorn bare_app:app --app-dir bench --workers 2
"""

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request, Response
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

COLUMNS = (
    "id, title, description, ingredients, instructions, resized_image_url, avg_rating,"
    " rating_count, seller_id, seller_username, created_at, updated_at, image_status,"
    " image_version, image_variants"
)
PAGE_SIZE = 10


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # At most the services' SQLAlchemy pool (10 + 10 overflow); few idle ones, as the server's
    # max_connections is shared with everything else on the machine.
    pool = AsyncConnectionPool(os.environ["BENCH_BARE_DSN"], min_size=2, max_size=20, open=False)
    await pool.open()
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/recipes/")
async def list_recipes(request: Request, page: int = 1) -> Response:
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT coalesce(sum(recipes), 0)::bigint AS n FROM recipe_count_shards"
        )
        count = (await cursor.fetchone() or {"n": 0})["n"]
        await cursor.execute(
            f"SELECT {COLUMNS} FROM recipes ORDER BY created_at DESC, id DESC OFFSET %s LIMIT %s",
            ((page - 1) * PAGE_SIZE, PAGE_SIZE),
        )
        rows = await cursor.fetchall()
    body = {"count": count, "next": None, "previous": None, "results": rows}
    return Response(json.dumps(body, default=_json_default), media_type="application/json")


@app.post("/recipes/{recipe_id}/rate/")
async def rate(recipe_id: int, request: Request, x_user_id: Annotated[int, Header()]) -> Response:
    body = await request.json()
    pool: AsyncConnectionPool = request.app.state.pool
    table = sql.Identifier(os.environ.get("BENCH_BARE_RATINGS_TABLE", "bench_ratings"))
    async with pool.connection() as conn:
        await conn.execute(
            sql.SQL(
                "INSERT INTO {} (recipe_id, user_id, username, score, comment, created_at,"
                " updated_at) VALUES (%s, %s, %s, %s, '', now(), now())"
                " ON CONFLICT (recipe_id, user_id)"
                " DO UPDATE SET score = EXCLUDED.score, updated_at = now()"
            ).format(table),
            (recipe_id, x_user_id, f"customer{x_user_id}", int(body["score"])),
        )
    return Response(json.dumps({"recipe_id": recipe_id, "score": body["score"]}))
