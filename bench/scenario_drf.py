"""drf-baseline: the recipes API against what a user would pick instead (issue 20).

One seeded database; the recipes API (uvicorn, WORKERS processes) and the drf-baseline app
(Django REST Framework under gunicorn, as many sync workers; baselines/drf_app.py) both serve it,
runs alternating. Compared: the recipe list, a recipe's detail, the anonymous list through the
gateway (its cache when the gateway has one) and 200 customers rating. The server CPU per request
of list and detail is read from /proc during the runs (``common.server_cpu``: the server's
processes and the database's PostgreSQL backends; wrk itself is not counted).
"""

import functools
import tempfile
from pathlib import Path

import psycopg
from baselines import drf_server
from common import Outcome, Row, Size, WrkResult, alternate, median, wrk, wrk_with_cpu
from recipes_stack import LIST_PATH, recipes_stack
from scenarios_http import (
    AGGREGATE_MISMATCHES,
    CUSTOMERS,
    RATED_RECIPES,
    _rating_script,
    _successes_only,
    gateway,
)

RECIPES = 10_000
#: The recipes API's processes in the bench (recipes_stack) and so gunicorn's workers.
WORKERS = 2
DETAIL_ID = RECIPES // 2
#: What profiling showed limits each goal not met; printed with it. Profiled with py-spy on
#: the recipes API's workers and CPU per process from /proc, both servers on the same database.
HTTP_LIMIT = (
    "Both servers saturate the 2 cores they share with PostgreSQL and wrk, so req/s follows the"
    " server CPU per request (the row beside it: the servers' processes and their PostgreSQL"
    " backends). Ours: one statement on an autocommit connection (the list's count from 16"
    " count shards, not count(*)), about 1.2 ms for a detail and 1.7 ms for a page of 10;"
    " py-spy puts a third of the API's part in psycopg sending the query and waiting (on"
    " loopback TCP the kernel's work for both ends is charged to the send), a quarter in"
    " FastAPI's dependency resolution (the pool checkout among it), the rest spread over"
    " uvicorn, Starlette, servicekit's middleware (request id, metrics, body limits) and"
    " pydantic: no frame above 10 %. The drf-baseline spends about 4.8 ms on a page (Django's"
    " paginator counts the table) but only about 1.9 ms on a detail (one primary-key lookup):"
    " 3x on the detail would need about 0.6 ms per request for everything, PostgreSQL"
    " included, less than the bare FastAPI app spends (scenario recipe-list)."
)
P99_LIMIT = (
    "64 connections on 2 cores: by Little's law the mean latency is 64 / req/s (about 60 ms at"
    " 1,100 req/s). Ours has the lower mean and the wider tail: each of the 2 API processes"
    " interleaves up to 32 requests on one event loop, so a request's latency includes the"
    " work of the others its loop runs meanwhile, while gunicorn's sync workers run one request"
    " at a time and leave the rest in the kernel's accept queue. A p99 under 100 ms at this"
    " concurrency needs more throughput per core, not another order of serving."
)
CACHED_P99_LIMIT = (
    "nginx answers from its cache at thousands of req/s with 64 connections; the tail is wrk"
    " and nginx sharing 2 cores (a request waits behind the other's time slice)."
)
RATINGS_VS_DRF_LIMIT = (
    "The drf-baseline runs the recipes service's own rating statement minus its outbox row,"
    " trusts an X-User-Id header and publishes nothing. Per successful rating (from /proc)"
    " ours spends about 4.3 ms in the API processes, a fifth to a third of it the outbox relay"
    " in those processes publishing the rating's event with a confirm (PostgreSQL 1.2 ms, RabbitMQ"
    " 0.2-0.3 ms), against 1.5 ms and 0.8 ms for the drf-baseline; the rest of ours is the"
    " token and revocation check, the writer lock (one pipelined round trip with BEGIN), the"
    " statement and the commit. Both are bound by the same cores, so the ratio cannot pass the"
    " ratio of the work: 3x would need ours to spend a third of what the baseline spends."
    " py-spy on the API (200 customers): the request's revocation check, which the writer lock's"
    " own check repeats inside the transaction, is about 9 % of its samples, the writer lock's"
    " pipelined round trip 15 %, the rating statement and the commit about a fifth."
)


def _ratio_row(
    metric: str, ours: list[WrkResult], drf: list[WrkResult], goal: float, note: str
) -> Row:
    a = median([r.requests_per_second for r in ours])
    b = median([r.requests_per_second for r in drf])
    return Row(
        "drf-baseline",
        metric,
        "req/s",
        a,
        b,
        f"≥ {goal:g}x drf-baseline",
        a / b >= goal,
        target=goal,
        note=note,
    )


def _p99_row(
    metric: str, ours: list[WrkResult], drf: list[WrkResult], limit_ms: float, note: str
) -> Row:
    p99 = median([r.p99_ms for r in ours])
    return Row(
        "drf-baseline",
        metric,
        "ms",
        p99,
        median([r.p99_ms for r in drf]),
        f"≤ {limit_ms:g} ms",
        p99 <= limit_ms,
        note=note,
    )


def _cpu_row(metric: str, ours: list[float], drf: list[float], limit_ms: float) -> Row:
    a, b = median(ours), median(drf)
    met = a <= limit_ms
    note = "" if met else HTTP_LIMIT
    return Row("drf-baseline", metric, "ms", a, b, f"≤ {limit_ms:g} ms", met, note=note)


def drf_baseline(size: Size) -> Outcome:
    outcome = Outcome("drf-baseline")
    seconds = size.http_seconds
    with (
        recipes_stack("drf", recipes=RECIPES, bare=False) as stack,
        drf_server(stack.dsn, workers=WORKERS) as (drf_url, drf),
        tempfile.TemporaryDirectory(prefix="bench-drf-") as tmp,
    ):
        assert stack.recipes_process is not None
        ours_servers, drf_servers = [stack.recipes_process], [drf]

        measured = functools.partial(wrk_with_cpu, seconds=seconds, dsn=stack.dsn)
        figures = {
            name: alternate(
                functools.partial(measured, stack.recipes_url + ours_path, servers=ours_servers),
                functools.partial(measured, drf_url + drf_path, servers=drf_servers),
                size.rounds,
            )
            for name, ours_path, drf_path in (
                ("list", LIST_PATH, "/recipes/"),
                ("detail", f"{LIST_PATH}{DETAIL_ID}/", f"/recipes/{DETAIL_ID}/"),
            )
        }
        with gateway(stack) as (gateway_url, _):
            cached, drf_list = alternate(
                lambda: wrk(gateway_url + LIST_PATH, seconds=seconds),
                lambda: wrk(drf_url + "/recipes/", seconds=seconds),
                size.rounds,
            )
        rating_seconds = 5 if size.quick else 15
        ours_script = _rating_script(stack, Path(tmp), "/api/recipes/")
        drf_script = _rating_script(stack, Path(tmp), "/recipes/")
        rated, drf_rated = alternate(
            lambda: wrk(
                stack.recipes_url + "/",
                seconds=rating_seconds,
                connections=CUSTOMERS,
                script=ours_script,
            ),
            lambda: wrk(
                drf_url + "/", seconds=rating_seconds, connections=CUSTOMERS, script=drf_script
            ),
            max(1, size.rounds - 1),
        )
        with psycopg.connect(stack.dsn) as conn:
            mismatches = conn.execute(AGGREGATE_MISMATCHES).fetchone()
    wrong = int(mismatches[0]) if mismatches else -1
    rows: list[Row] = []
    for name, cpu_limit in (("list", 2.5), ("detail", 2.0)):
        ours, theirs = figures[name]
        ours_runs, drf_runs = [r for r, _ in ours], [r for r, _ in theirs]
        rows += [
            _ratio_row(f"recipe {name}, uncached", ours_runs, drf_runs, 3.0, HTTP_LIMIT),
            _p99_row(f"recipe {name}, p99", ours_runs, drf_runs, 100, P99_LIMIT),
            _cpu_row(
                f"recipe {name}, server CPU per request",
                [c for _, c in ours],
                [c for _, c in theirs],
                cpu_limit,
            ),
        ]
    rows += [
        _ratio_row("anonymous list through the gateway", cached, drf_list, 10.0, ""),
        _p99_row("anonymous list through the gateway, p99", cached, drf_list, 50, CACHED_P99_LIMIT),
    ]
    rated_ok = [_successes_only(r) for r in rated]
    drf_ok = [_successes_only(r) for r in drf_rated]
    rows += [
        _ratio_row("ratings/s (successful)", rated_ok, drf_ok, 3.0, RATINGS_VS_DRF_LIMIT),
        Row(
            "drf-baseline",
            "recipes with wrong aggregates",
            "recipes",
            wrong,
            None,
            "= 0",
            wrong == 0,
        ),
    ]
    outcome.rows = rows
    outcome.details = {
        "recipes": RECIPES,
        "workers": WORKERS,
        "baseline": "Django REST Framework, gunicorn sync workers, CONN_MAX_AGE, DEBUG off",
        "ratings_failed_ours": sum(r.errors + r.non_2xx for r in rated),
        "ratings_failed_drf": sum(r.errors + r.non_2xx for r in drf_rated),
        "rating_customers": CUSTOMERS,
        "rated_recipes": RATED_RECIPES,
    }
    return outcome
