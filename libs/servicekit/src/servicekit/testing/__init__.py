"""The test toolkit every package's tests use: real servers, faults, tokens, waiting, delivery.

One module per concern: ``servers`` (containers or local servers, databases, vhosts),
``faults`` (a cuttable TCP proxy), ``tokens`` (signed access tokens), ``broker`` (topology
assertions, routing, collecting), ``waiting`` (``eventually``, its blocking twin ``wait_until``),
``metrics`` (``metric_value``), ``delivery`` (``deliver``: an event through a consumer's real
handlers without a broker) and ``plugin`` (the pytest fixtures, loaded through the ``pytest11``
entry point). The names below are the supported surface; import them from here.
"""

from servicekit.testing.broker import (
    assert_queue_topology,
    collecting_queue,
    queue_arguments,
    routed_keys,
)
from servicekit.testing.delivery import deliver
from servicekit.testing.faults import TcpProxy
from servicekit.testing.metrics import metric_value
from servicekit.testing.servers import (
    Infrastructure,
    Vhost,
    VhostAdmin,
    truncate_all,
    with_database,
    with_vhost,
)
from servicekit.testing.tokens import TokenFactory
from servicekit.testing.waiting import eventually, wait_until

__all__ = [
    "Infrastructure",
    "TcpProxy",
    "TokenFactory",
    "Vhost",
    "VhostAdmin",
    "assert_queue_topology",
    "collecting_queue",
    "deliver",
    "eventually",
    "metric_value",
    "queue_arguments",
    "routed_keys",
    "truncate_all",
    "wait_until",
    "with_database",
    "with_vhost",
]
