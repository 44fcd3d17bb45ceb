"""A recipes API (and its ceiling, the bare app) on a scratch database, seeded by the bench.

The recipes API runs the way it does in production, minus the gateway: uvicorn with 2 workers,
uvloop and httptools, its lifespan relaying the outbox to a scratch vhost, tokens verified against
a JWK Set the bench serves (``servicekit.testing.TokenFactory`` signs them).
"""

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from common import (
    HOST,
    free_port,
    libpq,
    process,
    scratch_database,
    scratch_vhost,
    static_json_server,
    uv_env,
    uvicorn_args,
)

from servicekit.testing import TokenFactory

LIST_PATH = "/api/recipes/"
WORDS = [
    "tomato",
    "basil",
    "garlic",
    "onion",
    "butter",
    "lemon",
    "thyme",
    "rosemary",
    "chicken",
    "rice",
    "beans",
    "pepper",
    "salt",
    "olive",
    "flour",
    "sugar",
    "egg",
    "milk",
    "cream",
    "cheese",
    "mushroom",
    "spinach",
    "potato",
    "carrot",
    "ginger",
    "soy",
    "honey",
]


@dataclass(frozen=True)
class RecipesStack:
    database_url: str
    amqp_url: str
    recipes_url: str
    bare_url: str
    tokens: TokenFactory
    #: The recipes API's uvicorn (its process group holds the workers), for ``server_cpu``.
    recipes_process: subprocess.Popen[bytes] | None = field(default=None, compare=False)

    @property
    def dsn(self) -> str:
        return libpq(self.database_url)


def _text(n: int, words: int) -> str:
    return " ".join(WORDS[(n * 7 + i * 3) % len(WORDS)] for i in range(words))


def seed_recipes(dsn: str, count: int) -> None:
    """``count`` recipes of realistic size, one second apart, from 50 sellers."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    columns = (
        "seller_id, seller_username, title, description, ingredients, instructions,"
        " created_at, updated_at"
    )
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor:
        with cursor.copy(f"COPY recipes ({columns}) FROM STDIN") as copy:
            for n in range(1, count + 1):
                seller = n % 50 + 1
                at = start + timedelta(seconds=n)
                copy.write_row(
                    (
                        seller,
                        f"seller{seller}",
                        f"Recipe {n}: {_text(n, 4)}",
                        _text(n, 50),
                        _text(n + 1, 30),
                        _text(n + 2, 120),
                        at,
                        at,
                    )
                )
        cursor.execute("ANALYZE recipes")


def migrate(database_url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "recipes.main", "migrate"],
        env=uv_env(RECIPES_DATABASE_URL=database_url, RECIPES_LOG_LEVEL="WARNING"),
        check=True,
        capture_output=True,
    )


@contextlib.contextmanager
def recipes_stack(
    scenario: str,
    *,
    recipes: int,
    amqp_url: str | None = None,
    bare: bool = True,
    cache_max_age: int | None = None,
) -> Iterator[RecipesStack]:
    """Migrated, seeded database; the recipes API and the bare app both listening.

    The API relays its outbox to ``amqp_url`` when given, else to a scratch vhost of its own.
    ``cache_max_age`` sets ``RECIPES_CACHE_MAX_AGE`` (0: a gateway in front caches nothing).
    """
    tokens = TokenFactory()
    with contextlib.ExitStack() as stack:
        if amqp_url is None:
            amqp_url = stack.enter_context(scratch_vhost(scenario))
        yield stack.enter_context(_stack(scenario, recipes, amqp_url, tokens, bare, cache_max_age))


@contextlib.contextmanager
def _stack(
    scenario: str,
    recipes: int,
    amqp_url: str,
    tokens: TokenFactory,
    bare: bool,
    cache_max_age: int | None,
) -> Iterator[RecipesStack]:
    with (
        scratch_database(scenario) as database_url,
        static_json_server(tokens.jwks()) as jwks_url,
        # As ``recipes api`` runs its processes (servicekit._serving): metrics shared in files.
        tempfile.TemporaryDirectory(prefix="bench-metrics-") as metrics_dir,
    ):
        migrate(database_url)
        seed_recipes(libpq(database_url), recipes)
        with psycopg.connect(libpq(database_url), autocommit=True) as conn:
            conn.execute("CREATE TABLE bench_ratings (LIKE ratings INCLUDING ALL)")
        recipes_port, bare_port = free_port(), free_port()
        recipes_env = uv_env(
            RECIPES_INTERNAL_BASE_URL=f"http://{HOST}:{recipes_port}",
            RECIPES_DATABASE_URL=database_url,
            RECIPES_AMQP_URL=amqp_url,
            RECIPES_JWKS_URL=jwks_url,
            RECIPES_LOG_LEVEL="WARNING",
            PROMETHEUS_MULTIPROC_DIR=metrics_dir,
        )
        if cache_max_age is not None:
            recipes_env["RECIPES_CACHE_MAX_AGE"] = str(cache_max_age)
        bare_env = uv_env(BENCH_BARE_DSN=libpq(database_url))
        with contextlib.ExitStack() as servers:
            recipes_process = servers.enter_context(
                process(
                    uvicorn_args("recipes.app:create_app", recipes_port, factory=True),
                    env=recipes_env,
                    ready_url=f"http://{HOST}:{recipes_port}{LIST_PATH}",
                    name="recipes",
                )
            )
            if bare:
                servers.enter_context(
                    process(
                        [*uvicorn_args("bare_app:app", bare_port), "--app-dir", "bench"],
                        env=bare_env,
                        ready_url=f"http://{HOST}:{bare_port}/recipes/",
                        name="bare",
                    )
                )
            yield RecipesStack(
                database_url=database_url,
                amqp_url=amqp_url,
                recipes_url=f"http://{HOST}:{recipes_port}",
                bare_url=f"http://{HOST}:{bare_port}",
                tokens=tokens,
                recipes_process=recipes_process,
            )
