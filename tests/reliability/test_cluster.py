"""A real three-node RabbitMQ cluster (deploy/local/rabbitmq_cluster.py) behind haproxy.

The smoke test runs in ``make test`` (about a minute, most of it the cluster starting): the
platform's topology declared on the cluster, events published with confirms, the node leading
the consumer queue killed with SIGKILL mid-stream, and every event consumed afterwards, together
with what waited in the delay and dead-letter queues (reliability/cluster_smoke.py, which
compose's cluster profile runs too). The long scenario (the whole platform on the cluster under
the mixed load, every leader stopped and killed, a rolling restart) runs in
``make test-reliability`` only.
"""

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from conftest import platform_on
from rabbitmq_cluster import CREDENTIALS, NODES, Cluster

from reliability.cluster_smoke import kill_the_queue_leader_midstream
from reliability.probes import CONSUMER_QUEUES, Platform
from reliability.report import Report
from reliability.scenarios import run_scenario
from reliability.test_faults import assert_clean, record
from servicekit.testing import Infrastructure, VhostAdmin, wait_until

pytestmark = pytest.mark.integration

T = TypeVar("T")


def whole(cluster: Cluster) -> Cluster:
    """The cluster with its three nodes running (an earlier test may have left one down)."""
    for n in NODES:
        if cluster.pid(n) is None:
            cluster.start_and_wait(n)
    return cluster


async def test_a_killed_queue_leader_loses_nothing_on_a_three_node_cluster(
    rabbitmq_cluster: Cluster, cluster_admin: VhostAdmin, run_id: str
) -> None:
    whole(rabbitmq_cluster)
    # Left to the cluster's end (the session's): deleting a vhost whose quorum queues have a
    # member down waits for that node.
    vhost = f"t_{run_id}_smoke"
    cluster_admin.create(vhost)
    outcome = await kill_the_queue_leader_midstream(rabbitmq_cluster, vhost)
    print(outcome.summary())


# --- the whole platform on the cluster (make test-reliability) ------------------------------

#: Eleven minutes of the whole platform on the cluster: in make test-reliability only.
long_scenario = pytest.mark.skipif(
    os.environ.get("RELIABILITY_DISRUPTIVE", "") in ("", "0"),
    reason="the platform on a three-node cluster for about 11 minutes: "
    "set RELIABILITY_DISRUPTIVE=1 (make test-reliability does)",
)
#: How long a stopped or killed node stays away before it is brought back.
NODE_OUTAGE_SECONDS = 5.0
SERVICES = ("auth", "recipes", "media", "notifier", "backup")


@pytest.fixture(scope="session")
def cluster_platform(
    cluster_infrastructure: Infrastructure,
    cluster_admin: VhostAdmin,
    rabbitmq_cluster: Cluster,
    run_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Platform]:
    """The whole platform, its broker the cluster through haproxy (one address)."""
    # migrate sets the queue policies through the cluster's management API, not the default.
    settings = {
        f"{service.upper()}_AMQP_MANAGEMENT_URL": rabbitmq_cluster.management_url
        for service in SERVICES
    }
    whole(rabbitmq_cluster)
    with platform_on(
        cluster_infrastructure,
        cluster_admin,
        name=f"tc_{run_id}",
        tmp_path_factory=tmp_path_factory,
        settings=settings,
    ) as running:
        yield Platform(
            running=running,
            admin=cluster_admin,
            management_api=rabbitmq_cluster.management_url + "/api",
            credentials=CREDENTIALS,
        )


def retrying(call: Callable[[], T], *, within: float = 30.0) -> T:
    """``call()``, retried while the management API is unreachable (its node just stopped:
    haproxy needs a second to mark it down)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return call()
        except (httpx.HTTPError, StopIteration, KeyError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@dataclass
class NodeFaults:
    """Stops and kills the nodes leading the platform's queues; records what it measured."""

    cluster: Cluster
    platform: Platform
    notes: list[str] = field(default_factory=list)
    failovers: list[float] = field(default_factory=list)
    recoveries: list[float] = field(default_factory=list)

    def leader(self, queue: str) -> int:
        return retrying(lambda: self.cluster.leader(self.platform.vhost, queue))

    def outage(self, queue: str, how: str) -> None:
        """Take the node leading ``queue`` away (``stop_app`` or ``kill``), then bring it back."""
        node = self.leader(queue)
        started = time.monotonic()
        if how == "stop_app":
            self.cluster.stop_app(node)  # returns once the node stopped (leadership handed over)
        else:
            self.cluster.kill(node)
        down = time.monotonic()
        # The management API shows a new leader once its statistics caught up: an upper bound
        # of the election itself (0.1-0.6 s measured with a client).
        wait_until(lambda: self.leader(queue) != node, within=60, what=f"a new leader of {queue}")
        failover = time.monotonic() - down
        # The platform carries on with two nodes: every process connected and consuming again.
        wait_until(self.platform.all_ready, within=120, what="every process ready on two nodes")
        ready = time.monotonic() - down
        time.sleep(max(0.0, NODE_OUTAGE_SECONDS - ready))
        if how == "stop_app":
            self.cluster.start_app(node)
        else:
            self.cluster.start_and_wait(node)
        wait_until(self.platform.all_ready, within=120, what="every process ready again")
        self.failovers.append(failover)
        self.recoveries.append(ready)
        self.notes.append(
            f"{queue}: its leader, node {node}, {how} ({down - started:.1f} s); new leader seen "
            f"{failover:.1f} s later, every process ready on two nodes {ready:.1f} s later; "
            f"node back after {time.monotonic() - started:.0f} s"
        )

    def rolling_restart(self) -> None:
        for node in NODES:
            started = time.monotonic()
            self.cluster.restart_node(node)
            wait_until(self.platform.all_ready, within=120, what="every process ready again")
            self.notes.append(
                f"rolling restart: node {node} stopped, started and every process ready "
                f"after {time.monotonic() - started:.1f} s"
            )

    def run(self) -> list[str]:
        for how in ("stop_app", "kill"):
            for queue in CONSUMER_QUEUES:
                self.outage(queue, how)
        self.rolling_restart()
        return self.notes


def relay_refusals(log_dir: Path) -> dict[str, tuple[int, float]]:
    """Per process: how often its outbox relay's publish was refused with a nack, and the
    seconds between the first and the last refusal (RabbitMQ 3.10 refuses a new channel's
    publishes to a queue whose leader was just killed, until that node returns)."""
    found: dict[str, tuple[int, float]] = {}
    for log in sorted(log_dir.glob("*.log")):
        times = []
        failed_at = None
        for line in log.read_text(errors="replace").splitlines():
            if "outbox relay failed" in line:
                failed_at = line.split(" ", 1)[0]
            elif failed_at and "Basic.Nack" in line:
                times.append(datetime.strptime(failed_at, "%H:%M:%S.%f"))
                failed_at = None
        if times:
            found[log.stem] = (len(times), (max(times) - min(times)).total_seconds())
    return found


@long_scenario
@pytest.mark.timeout(1800)  # 5 min of load, the faults, the settling: beyond the suite's 300 s
def test_the_platform_on_a_cluster_loses_nothing_when_every_leader_fails(
    cluster_platform: Platform, rabbitmq_cluster: Cluster, reliability_report: Report
) -> None:
    """Each quorum queue's leader stopped gracefully, then killed with SIGKILL, then every node
    restarted in turn, under the mixed load: every accepted request's effect exactly once, and
    no dead letter, with nobody stepping in."""
    faults = NodeFaults(whole(rabbitmq_cluster), cluster_platform)
    outcome = run_scenario(
        cluster_platform,
        faults.run,
        seed=5,
        seconds=300.0,
        fault_at=10.0,
        fault_timeout=900.0,
        settle_within=300.0,
    )
    record(
        reliability_report,
        "cluster",
        outcome,
        f"{len(CONSUMER_QUEUES)} leaders stop_app + {len(CONSUMER_QUEUES)} kill -9 + "
        f"{len(NODES)} rolling restarts",
    )
    row = reliability_report.row("cluster")
    if faults.failovers:
        row.notes.append(
            f"failover: new leader visible in the management API {min(faults.failovers):.1f}-"
            f"{max(faults.failovers):.1f} s after a node went, every process ready again on the "
            f"two others {min(faults.recoveries):.1f}-{max(faults.recoveries):.1f} s after"
        )
    refused = relay_refusals(cluster_platform.running.var_dir / "log")
    row.notes.append(
        "publishes refused (Basic.Nack) by the broker to the outbox relays, per process: "
        + (
            ", ".join(f"{name} {n} times over {span:.0f} s" for name, (n, span) in refused.items())
            or "none"
        )
    )
    dead = cluster_platform.unexpected_dead_letters()
    row.notes.append(f"dead letters afterwards: {sum(dead.values())} ({dead})")
    assert_clean(cluster_platform, outcome)
