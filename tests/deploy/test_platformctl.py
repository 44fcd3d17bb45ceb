"""The local runner behind make up / down: its parameters, its process handling, and a whole
up → gateway → down cycle with stand-in services (the real ones are exercised end to end by the
e2e test). Stand-ins are small scripts named like the services' commands, in PLATFORM_BIN_DIR.
"""

import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import platformctl
import processes
import pytest
from conftest import ports_free
from gateway_config import nginx_binary

from servicekit._settings import unknown_variables

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "deploy" / "local" / "platformctl.py"


def test_parameters_give_a_platform_of_its_own(tmp_path: Path) -> None:
    platform = platformctl.Platform.from_env(
        {
            "PLATFORM_VAR_DIR": str(tmp_path),
            "PLATFORM_DB_PREFIX": "e2e_1_",
            "PLATFORM_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/e2e-1",
            "PLATFORM_PORT_OFFSET": "100",
        }
    )
    recipes = next(s for s in platform.services if s.name == "recipes")
    env = platform.service_env(recipes)

    assert (
        env["RECIPES_DATABASE_URL"] == "postgresql+psycopg://postgres@127.0.0.1:5432/e2e_1_recipes"
    )
    assert env["RECIPES_AMQP_URL"] == "amqp://guest:guest@127.0.0.1:5672/e2e-1"
    assert env["RECIPES_API_PORT"] == "8102"
    assert env["RECIPES_HEALTH_PORT"] == "9102"
    assert env["RECIPES_DATA_DIR"] == str(tmp_path / "recipes")
    assert env["RECIPES_JWKS_URL"] == "http://127.0.0.1:8101/api/auth/.well-known/jwks.json"
    assert env["RECIPES_INTERNAL_BASE_URL"] == "http://127.0.0.1:8102"
    assert env["MEDIA_RECIPES_INTERNAL_URL"] == "http://127.0.0.1:8102"
    assert env["MEDIA_PUBLIC_BASE_URL"] == "http://127.0.0.1:8180/media/"
    assert platform.gateway_url == "http://127.0.0.1:8180"
    ready = {spec.name: spec.ready_url for spec in platform.specs()}
    assert ready == {
        "auth-api": "http://127.0.0.1:8101/readyz",
        "auth-worker": "http://127.0.0.1:9101/readyz",
        "recipes-api": "http://127.0.0.1:8102/readyz",
        "recipes-worker": "http://127.0.0.1:9102/readyz",
        "notifier-api": "http://127.0.0.1:8103/readyz",
        "notifier-worker": "http://127.0.0.1:9103/readyz",
        "media-worker": "http://127.0.0.1:9104/readyz",
        "backup-worker": "http://127.0.0.1:9105/readyz",
        "gateway": "http://127.0.0.1:8180/healthz",
    }


def test_explicit_settings_win_over_computed_ones_and_the_env_file(tmp_path: Path) -> None:
    (tmp_path / "platform.env").write_text(
        "# overrides\nAUTH_LOG_LEVEL=DEBUG\nexport GATEWAY_PORT=9999\nAUTH_API_PORT='7001'\n"
    )
    platform = platformctl.Platform.from_env(
        {"PLATFORM_VAR_DIR": str(tmp_path), "AUTH_API_PORT": "7002"}
    )
    env = platform.service_env(platform.services[0])

    assert env["AUTH_LOG_LEVEL"] == "DEBUG"
    assert env["AUTH_API_PORT"] == "7002"
    assert platform.gateway_port == 9999


def test_the_env_file_is_read_the_way_dotenv_files_are(tmp_path: Path) -> None:
    # The hand-written parser this replaced kept the comment and cut the quotes wrongly.
    (tmp_path / "platform.env").write_text(
        'NOTIFIER_MAIL_FROM="Recipes <a@b>"  # the sender\n'
        "AUTH_LOG_LEVEL='WARNING' # quiet\n"
        "export RECIPES_PAGE_SIZE_LIMIT=50\n"
    )
    env = platformctl.Platform.from_env({"PLATFORM_VAR_DIR": str(tmp_path)}).environ

    assert env["NOTIFIER_MAIL_FROM"] == "Recipes <a@b>"
    assert env["AUTH_LOG_LEVEL"] == "WARNING"
    assert env["RECIPES_PAGE_SIZE_LIMIT"] == "50"


def test_the_runner_sets_no_variable_a_service_does_not_know(tmp_path: Path) -> None:
    """Services warn at start-up about unknown ``<PREFIX>*`` variables: the runner sets none."""
    platform = platformctl.Platform.from_env({"PLATFORM_VAR_DIR": str(tmp_path)})
    for service in platform.services:
        settings_class = importlib.import_module(f"{service.name}.settings").Settings
        assert unknown_variables(settings_class, platform.service_env(service)) == [], service


def test_an_unknown_service_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="payments"):
        platformctl.Platform.from_env(
            {"PLATFORM_VAR_DIR": str(tmp_path), "PLATFORM_SERVICES": "auth,payments"}
        )


# --- processes -----------------------------------------------------------------------------


def _sleeper(
    tmp_path: Path, name: str, code: str = "import time; time.sleep(60)"
) -> processes.ProcessSpec:
    return processes.ProcessSpec(
        name=name,
        argv=[sys.executable, "-c", code],
        env={**os.environ, processes.MARKER: processes.marker(name, tmp_path)},
        log=tmp_path / "log" / f"{name}.log",
        ready_url="http://127.0.0.1:1/readyz",
    )


def test_a_started_process_is_recognised_and_stopped(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    spec = _sleeper(tmp_path, "sleeper")
    started = processes.start(spec, run_dir=run_dir, cwd=tmp_path)

    try:
        assert processes.running_pid(run_dir, "sleeper") == started.pid
        assert processes.sweep(tmp_path) == [started.pid]
        assert processes.sweep(tmp_path / "elsewhere") == []
    finally:
        killed = processes.stop([started.pid], timeout=10)
        started.wait(timeout=5)

    assert killed == []
    assert processes.running_pid(run_dir, "sleeper") is None
    assert processes.sweep(tmp_path) == []


def test_a_process_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    spec = _sleeper(tmp_path, "stubborn", code)
    started = processes.start(spec, run_dir=tmp_path / "run", cwd=tmp_path)
    while "ready" not in spec.log.read_text():
        time.sleep(0.02)

    killed = processes.stop([started.pid], timeout=0.5)

    assert killed == [started.pid]
    assert started.wait(timeout=5) == -signal.SIGKILL


@pytest.mark.parametrize("recorded", ["{pid}\n", "{pid}\n12345\n", "garbage"])
def test_a_stale_pid_file_is_not_taken_for_ours(tmp_path: Path, recorded: str) -> None:
    """This test's pid stands for a live process that reused a pid: another start time."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    processes.pid_file(run_dir, "auth-api").write_text(recorded.format(pid=os.getpid()))

    assert processes.running_pid(run_dir, "auth-api") is None


# --- up and down with stand-in services ----------------------------------------------------

STAND_IN = """
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

name, command = Path(sys.argv[0]).name, sys.argv[1]
prefix = name.upper() + "_"
data = Path(os.environ[prefix + "DATA_DIR"])
if command == "migrate":
    data.mkdir(parents=True, exist_ok=True)
    (data / "migrated").write_text(os.environ[prefix + "DATABASE_URL"])
    sys.exit(0)
port = int(os.environ[prefix + ("API_PORT" if command == "api" else "HEALTH_PORT")])

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"service": name, "command": command, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print(name, command, "listening on", port, flush=True)
HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture
def stand_in_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("auth", "recipes", "notifier", "media", "backup"):
        script = bin_dir / name
        script.write_text(f"#!{sys.executable}\n{STAND_IN}")
        script.chmod(0o755)
    offset = next(o for o in range(11000, 23000, 137) if ports_free(o))
    env = {
        **os.environ,
        "PLATFORM_VAR_DIR": str(tmp_path / "var"),
        "PLATFORM_BIN_DIR": str(bin_dir),
        "PLATFORM_PORT_OFFSET": str(offset),
        "PLATFORM_DB_PREFIX": "standin_",
        "PLATFORM_SKIP_INFRA": "1",
        "PLATFORM_START_TIMEOUT": "30",
    }
    yield env
    subprocess.run([sys.executable, str(RUNNER), "down"], env=env, capture_output=True)


def _runner(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUNNER), command], env=env, capture_output=True, text=True, timeout=90
    )


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")
def test_up_starts_everything_behind_the_gateway_and_down_stops_it_all(
    stand_in_env: dict[str, str], tmp_path: Path
) -> None:
    var = tmp_path / "var"
    platform = platformctl.Platform.from_env(stand_in_env)

    up = _runner("up", stand_in_env)

    assert up.returncode == 0, up.stdout + up.stderr
    assert platform.gateway_url in up.stdout
    assert (var / "recipes" / "migrated").read_text().endswith("/standin_recipes")
    with httpx.Client(base_url=platform.gateway_url) as client:
        assert client.get("/api/recipes/").json()["service"] == "recipes"
        assert client.get("/api/notifications/x").json()["service"] == "notifier"
    assert len(processes.sweep(var)) == 8  # every service process; nginx rewrites its env
    status = _runner("status", stand_in_env).stdout
    assert status.count(" ready ") == 9

    again = _runner("up", stand_in_env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing (all were running)" in again.stdout

    nginx_pid = int((var / "run" / "gateway" / "nginx.pid").read_text())
    (var / "run" / "auth-api.pid").unlink()  # lost pid files: found by their marker,
    (var / "run" / "gateway.pid").unlink()  # and nginx by its own pid file

    down = _runner("down", stand_in_env)

    assert down.returncode == 0, down.stderr
    assert "also stopped 2 process(es) without a pid file" in down.stdout
    assert processes.sweep(var) == []
    assert not list((var / "run").glob("*.pid"))
    assert not processes.alive(nginx_pid)  # (a zombie, at most, if nobody reaps it)
    assert ports_free(platform.port_offset)


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")
def test_up_reports_a_process_that_fails_and_leaves_nothing_running(
    stand_in_env: dict[str, str], tmp_path: Path
) -> None:
    broken = Path(stand_in_env["PLATFORM_BIN_DIR"]) / "media"
    broken.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "if sys.argv[1] == 'migrate': sys.exit(0)\n"
        "print('media worker: cannot reach Cloudinary', flush=True); sys.exit(3)\n"
    )

    up = _runner("up", stand_in_env)

    assert up.returncode == 1
    assert "media-worker is not ready" in up.stdout
    assert "cannot reach Cloudinary" in up.stdout
    assert processes.sweep(tmp_path / "var") == []


@pytest.mark.parametrize(
    ("max_age", "cache"), [(None, "public_reads"), ("2", "public_reads"), ("0", "off")]
)
def test_a_max_age_of_zero_turns_the_gateways_public_read_cache_off(
    tmp_path: Path, max_age: str | None, cache: str
) -> None:
    environ = {"PLATFORM_VAR_DIR": str(tmp_path)}
    if max_age is not None:
        environ["RECIPES_CACHE_MAX_AGE"] = max_age

    values = platformctl.Platform.from_env(environ).gateway_values()

    assert values["PUBLIC_READ_CACHE"] == cache
