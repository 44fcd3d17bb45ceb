"""What users would pick instead (issue 20), run from a venv of their own.

The baselines (Django REST Framework under gunicorn, Celery) are not dependencies of the
platform: ``baselines/requirements.txt`` pins them, and ``baseline_python()`` installs them once
into ``var/bench/baselines-<hash of the requirements>/`` with uv, from this interpreter (uv never
downloads a Python). A changed requirements file gets a new venv.
"""

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from common import BENCH_DIR, HOST, ROOT, free_port, process, uv_env

BASELINES_DIR = BENCH_DIR / "baselines"
REQUIREMENTS = BASELINES_DIR / "requirements.txt"


def baseline_python() -> Path:
    """The venv's interpreter, the venv made and filled first if needed."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = ROOT / "var" / "bench" / f"baselines-{digest}"
    python = venv / "bin" / "python"
    done = venv / ".installed"
    if done.exists():
        return python
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv is needed to install the baselines' venv")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run(
        [uv, "venv", "--no-config", "--no-python-downloads", "--python", sys.executable, str(venv)],
        capture_output=True,
        check=True,
    )
    # --no-config: the workspace's constraint list pins the platform's versions, not these.
    install = [uv, "pip", "install", "--no-config", "--no-python-downloads"]
    subprocess.run([*install, "--python", str(python), "-r", str(REQUIREMENTS)], check=True)
    done.touch()
    return python


def venv_env(python: Path, **extra: str) -> dict[str, str]:
    env = uv_env(**extra)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@contextlib.contextmanager
def drf_server(dsn: str, *, workers: int) -> Iterator[tuple[str, "subprocess.Popen[bytes]"]]:
    """The drf-baseline app under gunicorn (sync workers), ``workers`` processes."""
    python = baseline_python()
    port = free_port()
    args = [str(python), "-m", "gunicorn", "--workers", str(workers), "--bind", f"{HOST}:{port}"]
    args += ["--chdir", str(BASELINES_DIR), "--log-level", "warning", "drf_app:application"]
    url = f"http://{HOST}:{port}"
    env = venv_env(python, BENCH_DRF_DSN=dsn)
    with process(args, env=env, ready_url=url + "/recipes/", name="drf") as child:
        yield url, child
