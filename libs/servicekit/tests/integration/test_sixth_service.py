"""A sixth service, added the way docs/architecture.md says ("How a service is put together").

The files below are all a new service needs: settings, a table, a handler, the spec in
``main.py``, and one migration. The test runs its real command line (``tiny migrate``, ``tiny
worker``, ``tiny api``) as processes against this run's PostgreSQL and RabbitMQ, and checks what
the shared shape promises: the queue bound for the handler table, an event applied once, the
follow-up event relayed from the outbox, health and readiness served, the API's routes up.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import httpx
import psycopg
import pytest

from contracts import EXCHANGE_NAME, Envelope, UserRegistered, make_envelope
from servicekit._bus import envelope_message
from servicekit._db import libpq_url
from servicekit.testing import Vhost, VhostAdmin, eventually

pytestmark = pytest.mark.integration

TINY_FILES = {
    "src/tiny/__init__.py": "",
    "src/tiny/settings.py": """
        from pydantic_settings import SettingsConfigDict

        from servicekit._settings import ServiceSettings


        class Settings(ServiceSettings):
            model_config = SettingsConfigDict(env_prefix="TINY_")

            database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/tiny"
            health_port: int = 9006
            api_host: str = "127.0.0.1"
            api_port: int = 8006
        """,
    "src/tiny/models.py": """
        from sqlmodel import Field, SQLModel


        class Greeting(SQLModel, table=True):
            user_id: int = Field(primary_key=True)
            username: str
        """,
    "src/tiny/handlers.py": """
        from contracts import Event, UserRegistered, UserUpdated
        from servicekit._consumer import EventContext, Handler
        from tiny.models import Greeting


        async def on_user_registered(ctx: EventContext, event: UserRegistered) -> None:
            ctx.session.add(Greeting(user_id=event.user_id, username=event.username))
            # A follow-up event, through the outbox in the same transaction.
            await ctx.publish(
                UserUpdated.model_validate({**event.model_dump(), "version": event.version + 1})
            )


        HANDLERS: dict[type[Event], Handler] = {UserRegistered: on_user_registered}
        """,
    "src/tiny/app.py": """
        from fastapi import FastAPI

        from servicekit.fastapi import service_app
        from tiny.settings import Settings


        def create_app(settings: Settings) -> FastAPI:
            app = service_app(settings, title="Tiny", prefix="/api/tiny")

            @app.get("/api/tiny/hello")
            async def hello() -> dict[str, str]:
                return {"hello": "tiny"}

            return app
        """,
    "src/tiny/main.py": """
        from pathlib import Path

        from servicekit.service import ServiceSpec
        from tiny.app import create_app
        from tiny.handlers import HANDLERS
        from tiny.settings import Settings

        service = ServiceSpec(
            name="tiny",
            settings=Settings,
            service_dir=Path(__file__).resolve().parents[2],
            create_app=create_app,
            handlers=HANDLERS,
        )
        main = service.main

        if __name__ == "__main__":
            raise SystemExit(main())
        """,
    "alembic.ini": """
        [alembic]
        script_location = %(here)s/migrations
        prepend_sys_path = src
        path_separator = os
        """,
    "migrations/env.py": """
        from sqlmodel import SQLModel

        import servicekit._tables  # noqa: F401  (outbox, inbox)
        import tiny.models  # noqa: F401
        from servicekit._migrations import run_alembic_env
        from tiny.settings import Settings

        run_alembic_env(SQLModel.metadata, Settings().database_url)
        """,
    "migrations/versions/0001_initial.py": """
        from alembic import op
        from sqlmodel import SQLModel

        revision = "0001"
        down_revision = None


        def upgrade() -> None:
            SQLModel.metadata.create_all(op.get_bind())


        def downgrade() -> None:
            SQLModel.metadata.drop_all(op.get_bind())
        """,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def tiny_service(
    tmp_path: Path,
    make_database: Callable[[str], str],
    vhost: Vhost,
    vhost_admin: VhostAdmin,
) -> Iterator[dict[str, str]]:
    """The tiny service's files and the environment its processes run with."""
    for name, text in TINY_FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    yield {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "src"), os.environ.get("PYTHONPATH", "")]),
        "TINY_DATABASE_URL": make_database("tiny"),
        "TINY_AMQP_URL": vhost.url,
        "TINY_AMQP_MANAGEMENT_URL": vhost_admin.management_url,
        "TINY_HEALTH_PORT": str(free_port()),
        "TINY_API_PORT": str(free_port()),
        "TINY_API_PROCESSES": "1",
        "TINY_OUTBOX_POLL_INTERVAL": "0.1",
        "OTEL_TRACES_EXPORTER": "none",
        "TINY_LOG_JSON": "false",
        "TEST_LOG_DIR": str(tmp_path),
    }


def tiny(env: dict[str, str], *command: str) -> subprocess.Popen[bytes]:
    """``tiny COMMAND`` as a process; its output goes to ``<command>.log`` beside its files."""
    with (Path(env["TEST_LOG_DIR"]) / f"{command[0]}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tiny.main", *command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def logs(env: dict[str, str]) -> str:
    return "\n".join(
        f"--- {log.name}\n{log.read_text()[-3000:]}"
        for log in Path(env["TEST_LOG_DIR"]).glob("*.log")
    )


async def test_a_sixth_service_is_a_spec_and_runs_the_shared_commands(
    tiny_service: dict[str, str], vhost: Vhost
) -> None:
    env = tiny_service
    try:
        await run_the_tiny_service(env, vhost)
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{logs(env)}") from None


async def run_the_tiny_service(env: dict[str, str], vhost: Vhost) -> None:
    migrate = tiny(env, "migrate")
    assert migrate.wait(timeout=120) == 0, logs(env)
    follow_ups = await collect(vhost.url, "user.updated")

    worker, api = tiny(env, "worker"), tiny(env, "api")
    try:
        health = f"http://127.0.0.1:{env['TINY_HEALTH_PORT']}"
        await eventually(lambda: answers(f"{health}/readyz"), within=60, what="the worker ready")
        now = datetime.now(UTC)
        registered = UserRegistered(
            user_id=7,
            username="seven",
            email="seven@example.com",
            role="customer",
            date_joined=now,
            updated_at=now,
            version=1,
        )
        envelope = make_envelope(registered, producer="test")
        for _ in range(2):  # a redelivery is a no-op
            await publish(vhost.url, envelope)

        async def greeted_once() -> bool:
            return greetings(env["TINY_DATABASE_URL"]) == [(7, "seven")]

        async def followed_up() -> bool:
            return follow_ups.count == 1

        await eventually(greeted_once, within=30, what="the handler's row")
        await eventually(followed_up, within=30, what="the follow-up event relayed")
        api_url = f"http://127.0.0.1:{env['TINY_API_PORT']}"
        await eventually(lambda: answers(f"{api_url}/readyz"), within=60, what="the API ready")
        async with httpx.AsyncClient(base_url=api_url) as client:
            assert (await client.get("/api/tiny/hello")).json() == {"hello": "tiny"}
        assert greetings(env["TINY_DATABASE_URL"]) == [(7, "seven")]
        assert follow_ups.count == 1
    finally:
        for process in (worker, api):
            process.terminate()
            process.wait(timeout=30)
        await follow_ups.close()
    # Stopped, not crashed: uvicorn re-raises the SIGTERM it handled once it has shut down.
    assert worker.returncode in (0, -signal.SIGTERM), logs(env)


async def test_an_api_of_several_processes_counts_all_their_requests_in_every_scrape(
    tiny_service: dict[str, str],
) -> None:
    """Whichever process answers ``/metrics``, it reports the requests every process served."""
    env = {**tiny_service, "TINY_API_PROCESSES": "2"}
    assert tiny(env, "migrate").wait(timeout=120) == 0, logs(env)
    api = tiny(env, "api")
    api_url = f"http://127.0.0.1:{env['TINY_API_PORT']}"
    served = 40
    try:
        await eventually(lambda: answers(f"{api_url}/readyz"), within=60, what="the API ready")
        for _ in range(served):  # a connection each, so that both processes accept some
            async with httpx.AsyncClient(base_url=api_url) as client:
                assert (await client.get("/api/tiny/hello")).status_code == 200
        seen = []
        for _ in range(6):
            async with httpx.AsyncClient(base_url=api_url) as client:
                seen.append(hello_requests((await client.get("/metrics")).text))
        assert seen == [served] * 6, logs(env)
        async with httpx.AsyncClient(base_url=api_url) as client:
            exposition = (await client.get("/metrics")).text
        assert len(process_memory(exposition)) == 2, exposition  # each process, by its pid
    finally:
        api.terminate()
        api.wait(timeout=30)


def process_memory(exposition: str) -> dict[str, float]:
    """``process_resident_memory_bytes`` per ``pid`` label in a Prometheus text exposition."""
    return {
        line.split('pid="', 1)[1].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith("process_resident_memory_bytes{")
    }


def hello_requests(exposition: str) -> float:
    """``http_requests_total`` of ``GET /api/tiny/hello`` in a Prometheus text exposition."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith("http_requests_total{") and 'route="/api/tiny/hello"' in line
    )


async def answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(url, timeout=2)).status_code == 200
    except httpx.TransportError:
        return False


def greetings(database_url: str) -> list[tuple[int, str]]:
    with psycopg.connect(libpq_url(database_url)) as connection:
        rows = connection.execute("SELECT user_id, username FROM greeting").fetchall()
    return [(row[0], row[1]) for row in rows]


async def publish(amqp_url: str, envelope: Envelope) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EXCHANGE_NAME)
        message = envelope_message(envelope, {})
        await exchange.publish(message, routing_key="user.registered")


class Collector:
    """Counts the messages of one routing key on a queue of the test's own."""

    def __init__(self, connection: aio_pika.abc.AbstractRobustConnection) -> None:
        self._connection = connection
        self.count = 0

    def received(self, body: bytes) -> None:
        json.loads(body)
        self.count += 1

    async def close(self) -> None:
        await self._connection.close()


async def collect(amqp_url: str, routing_key: str) -> Collector:
    connection = await aio_pika.connect_robust(amqp_url)
    collector = Collector(connection)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(EXCHANGE_NAME, routing_key)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            collector.received(message.body)

    await queue.consume(on_message)
    return collector
