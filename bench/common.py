"""What every scenario needs: scratch databases and vhosts, servers on loopback, wrk, medians.

Every database is ``bench_<scenario>_<random>`` and every vhost the same, both dropped at the
end, so a benchmark never touches the data of a running platform or of another run.
"""

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
ADMIN_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_URL = os.environ.get("BENCH_RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
HOST = "127.0.0.1"
T = TypeVar("T")


@dataclass(frozen=True)
class Size:
    """How much work a run does: ``--quick`` shrinks every scenario."""

    quick: bool
    rounds: int
    http_seconds: int


@dataclass
class Row:
    """One line of the table: our figure, the ceiling's, and whether the goal holds."""

    scenario: str
    metric: str
    unit: str
    ours: float
    ceiling: float | None
    goal: str
    met: bool | None
    note: str = ""
    #: The goal as a ratio to the ceiling, when it is one (drawn on the chart).
    target: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.ceiling in (None, 0):
            return None
        assert self.ceiling is not None
        return self.ours / self.ceiling


@dataclass
class Outcome:
    scenario: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    measured_at: str = ""
    quick: bool = False


def libpq(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgresql") else url


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@contextlib.contextmanager
def scratch_database(scenario: str) -> Iterator[str]:
    """A new empty database (SQLAlchemy URL), dropped with everything in it afterwards."""
    name = f"bench_{scenario.replace('-', '_')}_{secrets.token_hex(4)}"
    admin = libpq(ADMIN_URL)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(ADMIN_URL, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def scratch_vhost(scenario: str) -> Iterator[str]:
    """A new RabbitMQ vhost (its AMQP URL), deleted with its queues afterwards."""
    name = f"bench_{scenario}_{secrets.token_hex(4)}"
    parts = urlsplit(AMQP_URL)
    auth = (parts.username or "guest", parts.password or "guest")
    api = MANAGEMENT_URL.rstrip("/") + "/api"
    quoted = quote(name, safe="")
    with httpx.Client(auth=auth, timeout=10) as client:
        client.put(f"{api}/vhosts/{quoted}").raise_for_status()
        client.put(
            f"{api}/permissions/{quoted}/{auth[0]}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
    try:
        yield urlunsplit(parts._replace(path="/" + quoted))
    finally:
        with httpx.Client(auth=auth, timeout=10) as client:
            client.delete(f"{api}/vhosts/{quoted}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def uv_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


@contextlib.contextmanager
def process(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    ready_url: str | None = None,
    name: str = "server",
    timeout: float = 60.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process (its own process group), waited for at ``ready_url``, stopped after."""
    with tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log") as log:
        child = subprocess.Popen(
            list(args),
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            if ready_url is not None:
                wait_http(ready_url, child, timeout=timeout, log=Path(log.name))
            yield child
        finally:
            stop_process(child)


def stop_process(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def wait_port(port: int, child: subprocess.Popen[bytes], *, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"{child.args!r} exited early")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f}s")


def wait_http(url: str, child: subprocess.Popen[bytes], *, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"{child.args!r} exited early:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def uvicorn_args(target: str, port: int, *, workers: int = 2, factory: bool = False) -> list[str]:
    """uvicorn with uvloop and httptools, as the services run in production."""
    args = [sys.executable, "-m", "uvicorn", target, "--host", HOST, "--port", str(port)]
    args += ["--workers", str(workers), "--loop", "uvloop", "--http", "httptools"]
    args += ["--log-level", "warning", "--no-access-log"]
    return [*args, "--factory"] if factory else args


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    non_2xx: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    def find(pattern: str) -> str:
        match = re.search(pattern, output)
        if match is None:
            raise RuntimeError(f"wrk output without {pattern!r}:\n{output}")
        return match.group(1)

    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_second=float(find(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=_duration_ms(find(r"\n\s+50%\s+(\S+)")),
        p99_ms=_duration_ms(find(r"\n\s+99%\s+(\S+)")),
        requests=int(find(r"(\d+) requests in")),
        errors=errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def wrk(
    url: str,
    *,
    seconds: int,
    connections: int = 64,
    threads: int = 2,
    headers: Sequence[str] = (),
    script: Path | None = None,
) -> WrkResult:
    """wrk in its own process against ``url`` (loopback only), with latency percentiles."""
    if urlsplit(url).hostname != HOST:
        raise ValueError("benchmarks only load loopback")
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    args += ["--timeout", "10s"]
    for header in headers:
        args += ["-H", header]
    if script is not None:
        args += ["-s", str(script)]
    done = subprocess.run([*args, url], capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


def alternate(
    ours: Callable[[], T], ceiling: Callable[[], T], rounds: int
) -> tuple[list[T], list[T]]:
    """Run ours, ceiling, ours, ceiling… so that drift in a noisy machine hits both alike."""
    mine: list[T] = []
    theirs: list[T] = []
    for _ in range(rounds):
        mine.append(ours())
        theirs.append(ceiling())
    return mine, theirs


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


@contextlib.contextmanager
def static_json_server(document: dict[str, Any]) -> Iterator[str]:
    """A tiny loopback HTTP server answering every GET with ``document`` (e.g. a JWK Set)."""
    body = json.dumps(document).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def _process_cpu_seconds(pid: int) -> float:
    """utime + stime of one live process (0 if it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _group_members(pgids: set[int]) -> set[int]:
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) in pgids:
                members.add(int(entry.name))
    return members


def _database_backends(dsn: str) -> set[int]:
    """PostgreSQL backends connected to this (scratch) database, other than ours."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return {int(row[0]) for row in rows}


def server_cpu(
    run: Callable[[], T], *, servers: Sequence[subprocess.Popen[bytes]], dsn: str
) -> tuple[T, float]:
    """``run()`` and the CPU seconds the path's processes spent meanwhile, read from /proc.

    The path is every process of each server's process group (uvicorn or gunicorn workers, nginx
    workers) and the PostgreSQL backends connected to the scenario's own database, so other users
    of the shared server are not counted. Backends are listed before and after the run; pools
    keep theirs open, so one that connects and leaves within the run is the only kind missed.
    """
    pgids = {child.pid for child in servers}
    before_pids = _group_members(pgids) | _database_backends(dsn)
    before = {pid: _process_cpu_seconds(pid) for pid in before_pids}
    result = run()
    after_pids = _group_members(pgids) | _database_backends(dsn) | before_pids
    spent = sum(max(0.0, _process_cpu_seconds(pid) - before.get(pid, 0.0)) for pid in after_pids)
    return result, spent


def wrk_with_cpu(
    url: str, *, seconds: int, servers: Sequence[subprocess.Popen[bytes]], dsn: str
) -> tuple[WrkResult, float]:
    """``wrk`` against ``url`` and the path's server CPU per request in ms (``server_cpu``)."""
    result, cpu = server_cpu(lambda: wrk(url, seconds=seconds), servers=servers, dsn=dsn)
    return result, 1000 * cpu / max(1, result.requests)
