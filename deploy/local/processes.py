"""Background processes with pid files: start detached, recognise, stop by process group.

Each process runs in its own session (so its group holds every child it forks, e.g. nginx's
workers), writes its output to one log file, and is recorded in ``<run_dir>/<name>.pid``: its
pid, then its start time in clock ticks since boot. A pid alone could be reused by an unrelated
process after a reboot or a crash; pid and start time together cannot. Every process also
carries the environment variable ``PLATFORM_PROCESS`` = ``<name>@<var dir>``, so ``sweep``
finds the platform's processes even when a pid file was lost (nginx rewrites its environment
area for its process title, but its pid file is reliable).
"""

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MARKER = "PLATFORM_PROCESS"


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log: Path
    #: Answers 200 when the process is ready.
    ready_url: str


def marker(name: str, var_dir: Path) -> str:
    return f"{name}@{var_dir}"


def pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def start(spec: ProcessSpec, *, run_dir: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start detached from this terminal, output appended to the log, pid recorded."""
    spec.log.parent.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    with spec.log.open("ab") as log:
        process = subprocess.Popen(
            list(spec.argv),
            cwd=cwd,
            env=dict(spec.env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file(run_dir, spec.name).write_text(f"{process.pid}\n{_start_time(process.pid)}\n")
    return process


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the parenthesised command name (state first)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _start_time(pid: int) -> str:
    fields = _stat(pid)
    return fields[19] if fields else ""


def process_group(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[2]) if fields else None


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"  # a zombie has finished


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def running_pid(run_dir: Path, name: str) -> int | None:
    """The pid of our live process called ``name``, if there is one."""
    try:
        pid, started = pid_file(run_dir, name).read_text().split()[:2]
    except (OSError, ValueError):
        return None
    ours = pid.isdigit() and alive(int(pid)) and _start_time(int(pid)) == started
    return int(pid) if ours else None


def sweep(var_dir: Path) -> list[int]:
    """Every live process marked as belonging to the platform under ``var_dir``."""
    suffix = f"@{var_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for item in _read(f"/proc/{entry.name}/environ").split(b"\0"):
            if item.startswith(f"{MARKER}=".encode()) and item.endswith(suffix):
                if alive(int(entry.name)):
                    found.append(int(entry.name))
                break
    return found


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def stop(pids: Sequence[int], *, timeout: float = 15.0) -> list[int]:
    """SIGTERM each process group, wait, then SIGKILL what is left. Returns the killed pids."""
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    killed = [pid for pid in pids if alive(pid)]
    for pid in killed:
        _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(alive(pid) for pid in killed):
        time.sleep(0.1)
    return killed


def tail(path: Path, lines: int = 20) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(content[-lines:])
