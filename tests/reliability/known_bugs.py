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

# Issue 16, "hostile clients": found by hand, each now a regression test.
OWNER_LOCKOUT = (
    "FIXED - auth: anyone could lock any account out: failures counted per username from any "
    "address (usernames are public); 12 wrong guesses from one address, then the owner from "
    "another: 429. Now per (username, address) and per address, with a per-username backstop "
    "that refuses only addresses that failed themselves; regression test "
    "test_security.py::test_guessing_on_a_public_username_does_not_lock_its_owner_out"
)
THROTTLE_OVERRUN = (
    "FIXED - auth: the sign-in throttle counted, then recorded, with nothing between: 40 "
    "concurrent wrong guesses got 26 password checks against a limit of 10. Each attempt is now "
    "reserved under an advisory lock before its check; regression tests "
    "test_security.py::test_concurrent_guesses_get_no_more_password_checks_than_the_limit, "
    "services/auth/tests/integration/test_throttle.py"
)
DELETED_ACCOUNTS_ACT = (
    "FIXED - recipes, notifier: a deleted account's unexpired token kept creating recipes and "
    "ratings that stayed. Tokens of deleted or deactivated users are refused once the event is "
    "applied, and writes are serialised with the cleanup per user; regression tests "
    "test_security.py::test_a_deleted_sellers_token_creates_nothing_that_stays (and the "
    "customer's), services/recipes/tests/integration/test_revoked_users.py"
)
LOST_USER_UPDATES = (
    "FIXED - auth: concurrent PATCH /api/auth/me/ read the user without a lock, two changes "
    "carried one version and the notifier and backup copies kept the first address for good "
    "(also with delete_me). The row is locked now; regression tests "
    "test_security.py::test_concurrent_changes_to_a_user_converge_on_the_last, "
    "services/auth/tests/integration/test_concurrent_changes.py"
)
EMAIL_RACE_500 = (
    "FIXED - auth: two users changing to one email at once: 500 (IntegrityError) in 3 of 3 "
    "races, now 400 with the email field's error; regression test "
    "test_security.py::test_two_users_taking_one_address_at_once_get_a_field_error"
)
DEEP_JSON_500 = (
    "FIXED - every service: JSON nested 20,000 deep answered 500 (RecursionError); bodies are "
    "limited in depth (400) and size (413) before parsing; regression tests "
    "test_security.py::test_json_nested_20000_deep_is_a_400, "
    "test_fuzz.py::test_hostile_json_on_every_json_route_is_refused_without_a_server_error"
)
CLEARTEXT_SMTP = (
    "FIXED - notifier: start_tls=False turned off opportunistic STARTTLS, so credentials and "
    "mail crossed the network in clear text; STARTTLS is used when offered and credentials "
    "never go unencrypted; regression test services/notifier/tests/unit/test_transport_tls.py"
)
UNMAILABLE_ADDRESSES = (
    "FIXED - auth: lukasz@exämple.com was accepted and the welcome mail failed as an unusable "
    "address; the domain is stored in its IDNA form, a non-ASCII local part is a field error; "
    "regression test test_security.py::"
    "test_an_internationalised_domain_is_accepted_in_a_form_that_can_be_mailed"
)
WELCOME_LOST_OUT_OF_ORDER = (
    "FIXED - notifier: a user.updated applied before its user.registered lost the welcome "
    "mail; regression test services/notifier/tests/integration/test_events.py::"
    "test_an_update_applied_before_its_registration_keeps_the_welcome"
)

#: Every finding, in the report's order.
ALL = (
    RECIPE_ID_OUT_OF_RANGE,
    FORWARDED_FOR_SPOOFS_THROTTLE,
    UPSTREAM_RESET_AFTER_500,
    READINESS_IGNORES_LOST_BROKER,
    OWNER_LOCKOUT,
    THROTTLE_OVERRUN,
    DELETED_ACCOUNTS_ACT,
    LOST_USER_UPDATES,
    EMAIL_RACE_500,
    DEEP_JSON_500,
    CLEARTEXT_SMTP,
    UNMAILABLE_ADDRESSES,
    WELCOME_LOST_OUT_OF_ORDER,
)
