"""compose.yaml's cluster profile for real: three nodes, one cluster, a leader killed.

The profile's three RabbitMQ nodes start under a compose project of this run, form one cluster
(rabbitmq-diagnostics cluster_status says so), and then run the cluster smoke scenario
(reliability/cluster_smoke.py, the one the local cluster runs): the platform's topology for one
queue, events published with confirms, the queue's leader killed with ``docker kill``, nothing
lost. The killed node then rejoins. The project goes (containers, networks, volumes) whatever
happens.
"""

import os
from collections.abc import Iterator

import docker
import pytest
from reliability.cluster_smoke import QUEUE, kill_the_queue_leader_midstream

from containers.compose_cluster import NODES, ComposeCluster, node_name
from servicekit._bus import dead_letter_queue_name, retry_queue_name
from servicekit._topology import policy_name
from servicekit.testing import wait_until

# Three nodes starting and forming a cluster: a minute or two on a busy two-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def cluster(engine: docker.DockerClient, run_label: str) -> Iterator[ComposeCluster]:
    started = ComposeCluster.for_run(engine, f"rp-cluster-{run_label}", dict(os.environ))
    try:
        started.up()
        yield started
    except BaseException:
        print(started.logs())
        raise
    finally:
        started.down()


def test_the_three_nodes_form_one_cluster(cluster: ComposeCluster) -> None:
    every_node = sorted(node_name(n) for n in NODES)
    for n in NODES:
        status = cluster.cluster_status(n)
        assert sorted(status["running_nodes"]) == every_node
        assert sorted(status["disk_nodes"]) == every_node


async def test_a_killed_queue_leader_loses_nothing_on_the_compose_cluster(
    cluster: ComposeCluster,
) -> None:
    cluster.create_vhost("smoke")
    outcome = await kill_the_queue_leader_midstream(cluster, "smoke")
    print(outcome.summary())
    # The platform's topology, as the services declare it: quorum queues under their policy.
    for name in (QUEUE, retry_queue_name(QUEUE, 0), dead_letter_queue_name(QUEUE)):
        assert cluster.queue("smoke", name)["type"] == "quorum", name
    # Statistics: the new leader reports the queue's policy within its interval (5 s).
    wait_until(
        lambda: cluster.queue("smoke", QUEUE).get("policy") == policy_name(QUEUE),
        within=30,
        what=f"{QUEUE} under its policy",
    )
    cluster.start_and_wait(outcome.killed)
    assert sorted(cluster.cluster_status(outcome.killed)["running_nodes"]) == sorted(
        node_name(n) for n in NODES
    )
