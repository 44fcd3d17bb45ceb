"""Bugs this suite found, with where they stand; the report lists them.

A fixed bug keeps its test as a plain regression test. An open one is an xfail test until fixed.
"""

#: PostgreSQL int4, the type of the recipes table's ids.
INT4_MAX = 2**31 - 1

RECIPE_ID_OUT_OF_RANGE = (
    "FIXED - recipes: a recipe id outside PostgreSQL's int4 range in any "
    "/api/recipes/{recipe_id}/... path (e.g. GET /api/recipes/9562139835177/) answered 500 "
    "(psycopg NumericValueOutOfRange) instead of 404; found by schemathesis; regression test "
    "test_fuzz.py::test_a_recipe_id_beyond_int4_is_not_found"
)
FORWARDED_FOR_SPOOFS_THROTTLE = (
    "FIXED - auth behind the gateway: the per-address sign-in throttle keyed on the FIRST "
    "X-Forwarded-For hop, which the client writes (nginx appends with "
    "$proxy_add_x_forwarded_for), so a new X-Forwarded-For per attempt escaped the per-address "
    "limit; regression test "
    "test_security.py::test_a_forged_forwarded_for_does_not_choose_the_throttle_key"
)
UPSTREAM_RESET_AFTER_500 = (
    "FIXED - services behind the gateway: after an unhandled error (500) uvicorn dropped the "
    "keep-alive connection (Starlette's ServerErrorMiddleware answers, then re-raises), nginx "
    "reused that pooled upstream connection for the NEXT request, possibly another client's, and "
    "answered it 502 when it was not idempotent: GET /api/recipes/9999999999/ (500 at the time) "
    "then POST /api/recipes/1/rate/ gave 502 in 46 of 50 tries; servicekit's request middleware "
    "now answers the 500 itself; regression test "
    "libs/servicekit/tests/unit/test_unhandled_errors.py"
)
READINESS_IGNORES_LOST_BROKER = (
    "NOT A BUG (test fixed) - servicekit health: after busy reconnects, a drop of every "
    "connection of the vhost was sometimes seen by no /readyz probe. The robust connection "
    "reconnects within milliseconds, before a sequential probe reaches the process, and the "
    "management API lists connections with a delay of seconds (it said 0 while they were back). "
    "A probe cannot see an outage shorter than its interval; the test now makes the broker "
    "refuse the reconnections until it lets them back, and every process must answer 503 for "
    "exactly that time: test_faults.py::test_readiness_reports_a_broker_outage_while_it_lasts"
)

#: Every finding, in the report's order.
ALL = (
    RECIPE_ID_OUT_OF_RANGE,
    FORWARDED_FOR_SPOOFS_THROTTLE,
    UPSTREAM_RESET_AFTER_500,
    READINESS_IGNORES_LOST_BROKER,
)
