"""Serving an API with as many processes as the machine has cores, by default (issue 20).

``make up`` ran one uvicorn process per API, so an API used one core of a machine that had more:
the recipe detail lost to the original backend's four gunicorn workers while spending less CPU per
request. ``serve_api`` runs ``<PREFIX>API_PROCESSES`` uvicorn workers, unset meaning one per CPU
this process may run on (its affinity, which a container's cpuset narrows; Kubernetes sets the
variable from the container's CPU limit). Each process is a whole app:

- its own database pool, so one API holds up to processes x ``<PREFIX>DATABASE_POOL_SIZE``
  PostgreSQL connections (the budget to check against the server's ``max_connections``);
- its own outbox relay (relays share the rows with ``SKIP LOCKED``);
- its own metrics, written to files in a directory the processes share
  (``PROMETHEUS_MULTIPROC_DIR``, a fresh temporary one unless set), so a scrape of
  ``/metrics``, whichever process answers it, adds up every process's counters
  (``servicekit._metrics``). A scrape of one process's registry alone would see counters jump
  back and forth between processes, which Prometheus reads as resets.

uvicorn starts workers by importing the app, so the app comes from a factory named by import
path (``recipes.main:service.api_app``), which also configures logging in each process.
"""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from servicekit._metrics import MULTIPROCESS_DIR_VARIABLE

#: Seconds uvicorn's supervisor waits for a worker to answer its health ping before it kills and
#: restarts it. uvicorn's 5 s killed every worker of `make up` on a loaded 2-core machine, where
#: importing the app (the GIL held) took longer: a restart loop that never served.
WORKER_HEALTHCHECK_TIMEOUT = 60


def machine_cores() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def api_processes(configured: int | None) -> int:
    """The API's process count: the setting, else one per core."""
    return configured or machine_cores()


def serve_api(
    factory: str,
    *,
    host: str,
    port: int,
    processes: int | None,
    log_level: str,
    proxy_headers: bool = True,
) -> None:
    """Serve the app ``factory`` builds (``module:function``) with ``api_processes`` workers."""
    workers = api_processes(processes)
    with shared_metrics(workers):
        uvicorn.run(
            factory,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            proxy_headers=proxy_headers,
            log_level=log_level.lower(),
            log_config=None,  # each process's factory configures logging
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_TIMEOUT,
        )


@contextlib.contextmanager
def shared_metrics(workers: int) -> Iterator[None]:
    """For more than one worker, a metrics directory they inherit: the one set, emptied (values
    of an earlier run would be added to this one's), or a temporary one removed afterwards."""
    if workers == 1:
        yield
        return
    configured = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if configured:
        Path(configured).mkdir(parents=True, exist_ok=True)
        for stale in Path(configured).glob("*.db"):
            stale.unlink()
        yield
        return
    directory = tempfile.mkdtemp(prefix="api-metrics-")
    os.environ[MULTIPROCESS_DIR_VARIABLE] = directory
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_DIR_VARIABLE]
        shutil.rmtree(directory, ignore_errors=True)
