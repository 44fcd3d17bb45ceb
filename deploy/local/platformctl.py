"""Run the whole platform on this machine: ``make up``, ``make down``, ``make logs``.

    uv run python deploy/local/platformctl.py up|down|logs|status
    uv run python deploy/local/platformctl.py run SERVICE COMMAND...   (e.g. run backup run-now)

What runs, and on which ports, is deploy/platform.toml (read by platform_layout.py).

``up`` makes sure PostgreSQL and RabbitMQ run (scripts/ensure-infra) and nginx is installed,
runs every service's migrations (each creates its own database), starts every API, worker and
the gateway in the background, waits until each ``/readyz`` answers 200 and prints where things
are. ``down`` stops exactly what ``up`` started. Everything lives under the var dir: pid files in
``run/``, logs in ``log/``, each service's data in ``<service>/`` (mail as .eml files in
``notifier/mail``, media files in ``media``, backups in ``backup/backups``). ``run`` runs a
service's command by hand (a backup, a digest, a replay of users) with the platform's settings.

Parameters (environment variables, or lines ``NAME=value`` in ``<var dir>/platform.env``; the
environment wins). The end-to-end test uses them to run a platform of its own beside yours:

    PLATFORM_VAR_DIR       var dir (default: var in the repository)
    PLATFORM_DB_BASE_URL   server URL the database names are appended to
                           (default postgresql+psycopg://postgres@127.0.0.1:5432/)
    PLATFORM_DB_PREFIX     prefix of every service's database name (default none: auth, recipes…)
    PLATFORM_AMQP_URL      broker URL, vhost included (default amqp://guest:guest@127.0.0.1:5672/)
    PLATFORM_PORT_OFFSET   added to every port of deploy/platform.toml (APIs, worker health)
    GATEWAY_PORT           gateway port (default deploy/platform.toml's + offset)
    PLATFORM_SERVICES      comma-separated subset of services to run (default: all of them)
    PLATFORM_START_TIMEOUT seconds to wait for readiness (default 180: a busy 2-core machine
                           took over 60 s to start every API process of `make up`)
    PLATFORM_SKIP_INFRA    1: do not run scripts/ensure-infra (the caller made sure)
    PLATFORM_BIN_DIR       where the services' commands are (default: this Python's environment)

Any service setting can be given too (``RECIPES_PAGE_SIZE=20``); the runner only computes the
ones that depend on the parameters above (database and broker URLs, ports, data dirs, the URLs
services use to reach each other) and never overrides a value set explicitly.
"""

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import gateway_config
import processes
from dotenv import dotenv_values
from platform_layout import LAYOUT, ServiceLayout
from processes import ProcessSpec

ROOT = Path(__file__).resolve().parents[2]


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of ``path`` as python-dotenv reads them (quotes, ``export``,
    comments); names without a value are left out."""
    if not path.is_file():
        return {}
    return {name: value for name, value in dotenv_values(path).items() if value is not None}


@dataclass(frozen=True)
class Platform:
    var_dir: Path
    db_base_url: str
    db_prefix: str
    amqp_url: str
    port_offset: int
    gateway_port: int
    services: tuple[ServiceLayout, ...]
    start_timeout: float
    skip_infra: bool
    bin_dir: Path
    #: The environment the processes inherit: this process's, over the env file's.
    environ: Mapping[str, str]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Platform":
        var_dir = Path(environ.get("PLATFORM_VAR_DIR", ROOT / "var")).resolve()
        env = {**read_env_file(var_dir / "platform.env"), **environ}
        offset = int(env.get("PLATFORM_PORT_OFFSET", "0"))
        wanted = [s.strip() for s in env.get("PLATFORM_SERVICES", "").split(",") if s.strip()]
        unknown = set(wanted) - set(LAYOUT.names)
        if unknown:
            raise SystemExit(f"PLATFORM_SERVICES: unknown service(s) {', '.join(sorted(unknown))}")
        base_url = env.get("PLATFORM_DB_BASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/")
        return cls(
            var_dir=var_dir,
            db_base_url=base_url.rstrip("/") + "/",
            db_prefix=env.get("PLATFORM_DB_PREFIX", ""),
            amqp_url=env.get("PLATFORM_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            port_offset=offset,
            gateway_port=int(env.get("GATEWAY_PORT", LAYOUT.gateway_port + offset)),
            services=tuple(s for s in LAYOUT.services if not wanted or s.name in wanted),
            start_timeout=float(env.get("PLATFORM_START_TIMEOUT", "180")),
            skip_infra=env.get("PLATFORM_SKIP_INFRA", "") not in ("", "0"),
            bin_dir=Path(env.get("PLATFORM_BIN_DIR", Path(sys.executable).parent)),
            environ=env,
        )

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    @property
    def media_dir(self) -> Path:
        return self.var_dir / "media"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def port(self, base: int) -> int:
        return base + self.port_offset

    def api_address(self, service: str) -> str:
        """``host:port`` of a service's API on this platform (deploy/platform.toml's port)."""
        return f"127.0.0.1:{self.port(LAYOUT.service(service).port_of('api'))}"

    def media_credential(self) -> str:
        """The media worker's credential at the recipes service: made once per var dir, kept
        there (owner-only) so that a restarted process gets the same one."""
        path = self.var_dir / "media-credential"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def service_env(self, service: ServiceLayout) -> dict[str, str]:
        """The computed settings of one service; explicit values in the environment win."""
        p = service.env_prefix
        recipes_url = f"http://{self.api_address('recipes')}"
        computed = {
            f"{p}DATABASE_URL": f"{self.db_base_url}{self.db_prefix}{service.name}",
            f"{p}AMQP_URL": self.amqp_url,
            f"{p}HEALTH_PORT": str(self.port(service.health_port)),
            f"{p}DATA_DIR": str(self.var_dir / service.name),
            # People read these logs with `make logs`: text, not JSON lines.
            f"{p}LOG_JSON": "false",
            # Clients come through the gateway, which sets X-Forwarded-For.
            "AUTH_TRUST_FORWARDED_FOR": "true",
            "RECIPES_INTERNAL_BASE_URL": recipes_url,
            "MEDIA_RECIPES_INTERNAL_URL": recipes_url,
            "MEDIA_PUBLIC_BASE_URL": f"{self.gateway_url}/media/",
            # One credential on both sides: replayed image events fetch past their link's expiry.
            "RECIPES_MEDIA_CREDENTIAL": self.media_credential(),
            "MEDIA_RECIPES_CREDENTIAL": self.media_credential(),
            # Unsubscribe links in mail point at the gateway.
            "NOTIFIER_PUBLIC_BASE_URL": self.gateway_url,
        }
        if service.verifies_tokens:
            # Every verifier trusts the auth service of this platform, not the default one.
            jwks = f"http://{self.api_address('auth')}/api/auth/.well-known/jwks.json"
            computed[f"{p}JWKS_URL"] = jwks
        if service.api_port is not None:
            computed[f"{p}API_PORT"] = str(self.port(service.api_port))
        return {
            **computed,
            **self.environ,
            processes.MARKER: "",  # set per process
            "PYTHONUNBUFFERED": "1",
        }

    def binary(self, name: str) -> str:
        """The service's console script (installed by `uv sync --all-packages`)."""
        return str(self.bin_dir / name)

    def gateway_values(self) -> dict[str, str]:
        return gateway_config.local_values(
            run_dir=self.run_dir / "gateway",
            log_dir=self.log_dir,
            media_root=self.media_dir,
            port=self.gateway_port,
            auth_upstream=self.api_address("auth"),
            recipes_upstream=self.api_address("recipes"),
            notifier_upstream=self.api_address("notifier"),
            # RECIPES_CACHE_MAX_AGE=0 turns public read caching off: the gateway's too.
            public_read_cache=self.environ.get("RECIPES_CACHE_MAX_AGE", "").strip() != "0",
        )

    @property
    def gateway_config_path(self) -> Path:
        return self.run_dir / "gateway" / "nginx.conf"

    def specs(self) -> list[ProcessSpec]:
        """Every process of the platform, in start order (the gateway last)."""
        specs = []
        for service in self.services:
            env = self.service_env(service)
            for command in service.processes:
                name = f"{service.name}-{command}"
                port = service.port_of(command)
                specs.append(
                    ProcessSpec(
                        name=name,
                        argv=[self.binary(service.name), command],
                        env={**env, processes.MARKER: processes.marker(name, self.var_dir)},
                        log=self.log_dir / f"{name}.log",
                        ready_url=f"http://127.0.0.1:{self.port(port)}/readyz",
                    )
                )
        values = self.gateway_values()
        config = self.gateway_config_path
        specs.append(
            ProcessSpec(
                name="gateway",
                argv=_gateway_argv(config, values),
                env={**self.environ, processes.MARKER: processes.marker("gateway", self.var_dir)},
                log=Path(values["ERROR_LOG"]),
                ready_url=f"{self.gateway_url}/healthz",
            )
        )
        return specs


def _gateway_argv(config: Path, values: Mapping[str, str]) -> list[str]:
    try:
        return gateway_config.nginx_command(config, values)
    except FileNotFoundError:
        return ["nginx", "-c", str(config)]  # status/down only; up installs nginx first


# --- up ------------------------------------------------------------------------------------


def ensure_infra(platform: Platform) -> None:
    if platform.skip_infra:
        return
    # The script checks (and starts) the servers these URLs name, not the default ones.
    env = {
        **os.environ,
        **platform.environ,
        "PLATFORM_DB_BASE_URL": platform.db_base_url,
        "PLATFORM_AMQP_URL": platform.amqp_url,
    }
    subprocess.run([str(ROOT / "scripts" / "ensure-infra")], check=True, env=env)


def ensure_nginx() -> None:
    if gateway_config.nginx_binary() is not None:
        return
    print("nginx is missing: installing it with the package manager")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        installed = (
            subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env).returncode == 0
            and subprocess.run(
                [*sudo, "apt-get", "install", "-y", "-qq", "nginx"], env=env
            ).returncode
            == 0
        )
    elif shutil.which("brew"):
        installed = subprocess.run(["brew", "install", "nginx"]).returncode == 0
    else:
        installed = False
    if not installed or gateway_config.nginx_binary() is None:
        raise SystemExit(
            "nginx is needed for the gateway and could not be installed here; install it "
            "(e.g. `apt-get install nginx`) and run `make up` again."
        )


def check_installed(platform: Platform) -> None:
    missing = [s.name for s in platform.services if not Path(platform.binary(s.name)).is_file()]
    if missing:
        raise SystemExit(
            f"not installed: {', '.join(missing)}; run `make setup` (uv sync --all-packages)"
        )


def migrate(platform: Platform) -> None:
    """Every service's migrations, in parallel (each creates its own database first)."""
    platform.log_dir.mkdir(parents=True, exist_ok=True)
    running = {}
    for service in platform.services:
        log = platform.log_dir / f"{service.name}-migrate.log"
        with log.open("wb") as out:
            running[service.name] = (
                subprocess.Popen(
                    [platform.binary(service.name), "migrate"],
                    cwd=ROOT,
                    env=platform.service_env(service),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )
    failed = [(name, log) for name, (proc, log) in running.items() if proc.wait() != 0]
    for name, log in failed:
        print(f"migrations of {name} failed ({log}):\n{processes.tail(log)}", file=sys.stderr)
    if failed:
        raise SystemExit(1)
    print(f"migrated: {', '.join(running)}")


def _port_taken(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_all(platform: Platform, specs: list[ProcessSpec]) -> list[str]:
    """Start every process not already running; refuse ports held by someone else."""
    started = []
    for spec in specs:
        if processes.running_pid(platform.run_dir, spec.name):
            continue
        port = int(spec.ready_url.split(":")[2].split("/")[0])
        if _port_taken(port):
            raise SystemExit(
                f"port {port} (for {spec.name}) is in use by another program; stop it or set "
                "PLATFORM_PORT_OFFSET / GATEWAY_PORT"
            )
        processes.start(spec, run_dir=platform.run_dir, cwd=ROOT)
        started.append(spec.name)
    return started


def wait_ready(platform: Platform, specs: list[ProcessSpec]) -> list[ProcessSpec]:
    """Wait until every process answers ready; returns those that did not in time or died."""
    pending = list(specs)
    deadline = time.monotonic() + platform.start_timeout
    while pending and time.monotonic() < deadline:
        dead = [s for s in pending if not _is_running(platform, s)]
        if dead:
            return dead
        pending = [s for s in pending if not _ready(s.ready_url)]
        if pending:
            time.sleep(0.5)
    return pending


def _is_running(platform: Platform, spec: ProcessSpec) -> bool:
    return processes.running_pid(platform.run_dir, spec.name) is not None


def up(platform: Platform) -> None:
    check_installed(platform)
    ensure_infra(platform)
    ensure_nginx()
    for service in platform.services:
        (platform.var_dir / service.name).mkdir(parents=True, exist_ok=True)
    values = platform.gateway_values()
    gateway_config.write_config(values, platform.gateway_config_path)
    check = gateway_config.nginx_command(platform.gateway_config_path, values, test=True)
    result = subprocess.run(check, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the gateway config is invalid:\n{result.stderr}")
    migrate(platform)
    specs = platform.specs()
    started = start_all(platform, specs)
    print(f"started: {', '.join(started) or 'nothing (all were running)'}; waiting for readiness")
    failed = wait_ready(platform, specs)
    if failed:
        for spec in failed:
            print(f"\n{spec.name} is not ready ({spec.ready_url}); last lines of {spec.log}:")
            print(processes.tail(spec.log))
        print("\nstopping the platform", file=sys.stderr)
        down(platform, quiet=True)
        raise SystemExit(1)
    _print_summary(platform)


def _print_summary(platform: Platform) -> None:
    rel = _relative
    print(
        f"""
The platform is up.
  gateway   {platform.gateway_url}/   (try {platform.gateway_url}/api/recipes/)
  API docs  {platform.gateway_url}/api/auth/docs  /api/recipes/docs  /api/notifications/docs
  mail      {rel(platform.var_dir / "notifier" / "mail")}/*.eml  (no mail server needed)
  media     {rel(platform.media_dir)}  (served at {platform.gateway_url}/media/)
  backups   {rel(platform.var_dir / "backup" / "backups")}
  logs      {rel(platform.log_dir)}  (make logs)    stop: make down"""
    )


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- down, logs, status --------------------------------------------------------------------


def down(platform: Platform, *, quiet: bool = False) -> None:
    """Stop what ``up`` started: pid files first, then any marked process left over."""
    pids = []
    names = []
    for spec in platform.specs():
        pid = processes.running_pid(platform.run_dir, spec.name)
        if pid is not None:
            pids.append(pid)
            names.append(spec.name)
    # Children (e.g. the media worker's image processes) go with their process group; strays
    # are platform processes whose leader's pid file was lost. nginx overwrites the environment
    # the sweep looks for, but keeps a pid file of its own.
    strays = [
        pid
        for pid in [*processes.sweep(platform.var_dir), *_nginx_by_own_pid_file(platform)]
        if pid not in pids and processes.process_group(pid) not in pids
    ]
    killed = processes.stop(pids + strays)
    # Whatever outlived its group leader (a child that ignored SIGTERM) goes too.
    killed += processes.stop(processes.sweep(platform.var_dir), timeout=5.0)
    for spec in platform.specs():
        processes.pid_file(platform.run_dir, spec.name).unlink(missing_ok=True)
    if not quiet:
        print(f"stopped: {', '.join(names) or 'nothing was running'}")
        if strays:
            print(f"also stopped {len(strays)} process(es) without a pid file")
        if killed:
            print(f"{len(killed)} did not stop on SIGTERM and were killed")


def _nginx_by_own_pid_file(platform: Platform) -> list[int]:
    try:
        pid = int((platform.run_dir / "gateway" / "nginx.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return []
    return [pid] if str(platform.gateway_config_path).encode() in cmdline else []


def logs(platform: Platform) -> None:
    files = sorted(str(p) for p in platform.log_dir.glob("*.log"))
    if not files:
        raise SystemExit(f"no logs under {platform.log_dir}: is the platform up?")
    os.execvp("tail", ["tail", "-n", "20", "-F", *files])


def status(platform: Platform) -> None:
    for spec in platform.specs():
        pid = processes.running_pid(platform.run_dir, spec.name)
        state = "stopped" if pid is None else ("ready" if _ready(spec.ready_url) else "not ready")
        print(f"{spec.name:16} {state:10} {'' if pid is None else pid:>8}  {spec.ready_url}")


def run(platform: Platform, arguments: list[str]) -> None:
    """A service's command with the platform's settings, e.g. ``backup run-now``."""
    services = {s.name: s for s in LAYOUT.services}
    if not arguments or arguments[0] not in services:
        raise SystemExit(f"usage: run SERVICE COMMAND... (SERVICE: {', '.join(services)})")
    service = services[arguments[0]]
    raise SystemExit(
        subprocess.run(
            [platform.binary(service.name), *arguments[1:]],
            cwd=ROOT,
            env=platform.service_env(service),
        ).returncode
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "logs", "status", "run"])
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    platform = Platform.from_env(os.environ)
    if args.command == "run":
        run(platform, args.arguments)
    else:
        {"up": up, "down": down, "logs": logs, "status": status}[args.command](platform)


if __name__ == "__main__":
    main()
