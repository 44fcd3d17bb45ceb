import asyncio
import json
from collections.abc import Callable

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from opentelemetry.trace import SpanKind

from auth.main import main
from servicekit import libpq_url
from servicekit._tracing import capture_spans
from tests.helpers import register

pytestmark = pytest.mark.integration

#: A route the test can call without setting anything up first.
TRACED_ROUTE = "/api/auth/.well-known/jwks.json"


@pytest.mark.usefixtures("restore_logging")
def test_migrate_creates_and_upgrades_the_database_logging_json_lines(
    make_database: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = make_database("cli")
    monkeypatch.setenv("AUTH_DATABASE_URL", url)
    main(["migrate"])
    main(["migrate"])  # idempotent
    with psycopg.connect(libpq_url(url)) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables")}
    assert {"users", "refresh_tokens", "login_failures", "outbox_messages"} <= tables
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert logged and {entry["service"] for entry in logged} == {"auth"}
    assert any(entry["logger"].startswith("alembic") for entry in logged)


@pytest.mark.usefixtures("restore_logging")
async def test_replay_users_command(
    client: httpx.AsyncClient,
    app: FastAPI,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await register(client, "alice")
    monkeypatch.setenv("AUTH_DATABASE_URL", database_url)
    await asyncio.to_thread(main, ["replay-users"])
    assert "queued 1 user.updated" in capsys.readouterr().out


async def test_openapi_is_served_under_the_service_prefix(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/auth/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/auth/register/" in paths
    assert "/api/auth/register" not in paths
    assert (await client.get("/api/auth/docs")).status_code == 200


async def test_a_request_makes_one_server_span_and_a_probe_none(client: httpx.AsyncClient) -> None:
    spans = capture_spans()
    spans.clear()
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get(TRACED_ROUTE)).status_code == 200
    served = [span.name for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert served == [f"GET {TRACED_ROUTE}"]
