"""``serve_api``: the API runs in as many processes as it is told, one per core by default."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servicekit._metrics import MULTIPROCESS_DIR_VARIABLE, ApiProcesses
from servicekit._serving import api_processes, machine_cores, shared_metrics

APP = """
import os
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

def make():
    return Starlette(routes=[Route("/", lambda request: PlainTextResponse(str(os.getpid())))])
"""


def test_the_default_is_one_process_per_core() -> None:
    assert api_processes(None) == machine_cores() == len(os.sched_getaffinity(0))
    assert api_processes(3) == 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    (tmp_path / "tiny_app.py").write_text(APP)
    port = _free_port()
    code = (
        "from servicekit._serving import serve_api;"
        f"serve_api('tiny_app:make', host='127.0.0.1', port={port}, processes=3,"
        " log_level='WARNING')"
    )
    server = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path)
    try:
        yield server, f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serves_with_the_configured_number_of_processes(
    served: tuple[subprocess.Popen[bytes], str],
) -> None:
    server, url = served

    def workers() -> set[int]:
        """Children started by multiprocessing's spawn (not its resource tracker)."""
        found = set()
        for pid in _children(server.pid):
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.add(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue
        return found

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            answered_by = int(httpx.get(url, timeout=5).text)
        except httpx.TransportError:
            answered_by = 0
        if len(workers()) == 3 and answered_by in workers():
            return
        time.sleep(0.2)
    raise AssertionError(f"not 3 worker processes serving: {workers()}")


def test_several_processes_share_a_fresh_metrics_directory_removed_afterwards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROCESS_DIR_VARIABLE, raising=False)
    with shared_metrics(1):
        assert MULTIPROCESS_DIR_VARIABLE not in os.environ
    with shared_metrics(2):
        directory = Path(os.environ[MULTIPROCESS_DIR_VARIABLE])
        assert directory.is_dir() and not any(directory.iterdir())
    assert MULTIPROCESS_DIR_VARIABLE not in os.environ and not directory.exists()


def test_a_configured_metrics_directory_is_emptied_of_an_earlier_runs_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("not ours")
    monkeypatch.setenv(MULTIPROCESS_DIR_VARIABLE, str(tmp_path))
    with shared_metrics(2):
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert os.environ[MULTIPROCESS_DIR_VARIABLE] == str(tmp_path)


def test_process_metrics_cover_each_live_process_of_the_directory(tmp_path: Path) -> None:
    exited = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    gone = int(exited.stdout)
    for pid in (os.getpid(), gone):
        (tmp_path / f"counter_{pid}.db").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a process's")
    families = {family.name: family for family in ApiProcesses(tmp_path).collect()}
    memory = families["process_resident_memory_bytes"].samples
    assert [sample.labels for sample in memory] == [{"pid": str(os.getpid())}]
    assert memory[0].value > 0
    cpu = families["process_cpu_seconds"].samples
    assert [(sample.name, sample.labels) for sample in cpu] == [
        ("process_cpu_seconds_total", {"pid": str(os.getpid())})
    ]
