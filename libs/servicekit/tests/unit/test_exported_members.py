"""The supported surface of ``servicekit`` is deliberate: adding or removing a name is a change
made here too (as httpx guards its own with ``tests/test_exported_members.py``)."""

import ast
import inspect

import pytest

import servicekit

EXPECTED = {
    # the web glue
    "HTTP_TELEMETRY",
    "ReadConnectionDep",
    "SessionDep",
    "app_state",
    "install_http_basics",
    "service_app",
    "slash_tolerant_routes",
    "FormBodyRoute",
    "Readiness",
    "error_responses",
    "field_errors",
    "ApiError",
    "NotAuthenticated",
    "NotFound",
    "PermissionDenied",
    # access tokens
    "CurrentPrincipal",
    "CustomerPrincipal",
    "OptionalPrincipal",
    "Principal",
    "SellerPrincipal",
    "TokenVerifier",
    "verifier_from_settings",
    "RevokedUsers",
    "hold_writer",
    "record_user_state",
    "writer_is_revoked",
    # the database and its migrations
    "SessionMaker",
    "create_engine",
    "create_session_maker",
    "libpq_url",
    "ensure_database",
    "upgrade_database",
    "run_alembic_env",
    "create_outbox_quarantine",
    "drop_outbox_quarantine",
    "InboxMessage",
    "OutboxMessage",
    "utcnow",
    # messaging
    "Bus",
    "RetryPolicy",
    "Consumer",
    "EventContext",
    "Handler",
    "NOTIFY_CHANNEL",
    "add_event",
    "outbox_row",
    "TickEmitter",
    # running a service: its declaration and command line
    "ServiceSpec",
    "Schedule",
    "Task",
    "Command",
    "Worker",
    "WorkerContext",
    "Resources",
    "ServiceSettings",
    "TokenSettings",
    "Messaging",
    "api_lifespan",
    "configure_observability",
    "declare_queues",
    "run_worker",
    "serve_api",
    # logs and traces
    "context_fields",
    "inject_headers",
    "is_valid_request_id",
}


def test_all_is_the_expected_surface() -> None:
    assert len(servicekit.__all__) == len(set(servicekit.__all__))
    assert set(servicekit.__all__) == EXPECTED


def test_every_exported_name_resolves_to_its_module_s_object() -> None:
    for name in servicekit.__all__:
        value = getattr(servicekit, name)
        home = servicekit._HOMES[name]
        assert value is getattr(__import__(home, fromlist=[name]), name), name


def test_type_checkers_see_the_same_names_as_the_runtime() -> None:
    tree = ast.parse(inspect.getsource(servicekit))
    (block,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    seen = {
        (node.module, alias.name)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }

    assert seen == {(home, name) for name, home in servicekit._HOMES.items()}
    assert set(servicekit._HOMES) == set(servicekit.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        servicekit.no_such_name  # type: ignore[attr-defined]  # noqa: B018
