"""The queues of a consumer, declared so that settings can change and no node loss loses a message.

Every consumer queue ``Q`` comes with:

- ``Q``: a durable quorum queue bound to the exchange for the routing keys it handles; it
  dead-letters to ``Q.dlq`` a message that keeps crashing the consumer before it can ack.
- ``Q.retry.N``: a quorum queue per retry step. A retried message carries its delay as its own
  expiration (per-message TTL); when it expires the queue dead-letters it back to ``Q`` through
  the default exchange, so a retry reaches only the consumer that failed.
- ``Q.dlq``: a quorum queue where a message is parked after its last attempt.

**Settings that can change between deploys.** A queue's arguments can never change (declaring it
again with others fails with ``PRECONDITION_FAILED - inequivalent arg``, and only deleting the
queue, with its messages, would get out of it). So the queues are declared only with arguments
that hold whatever the settings say, and what the settings decide lives elsewhere:

- the retry delays (``<PREFIX>RETRY_DELAYS``) are the retried messages' own expiration: a new
  delay applies to the next retry; a message already waiting keeps the delay it was sent with.
  A queue expires messages from its head only, so after a delay was shortened, new retries of
  that step may wait behind older, longer ones (once, at most the old delay). A step that is no
  longer configured keeps its queue, which empties itself into ``Q``.
- the delivery limit (``<PREFIX>DELIVERY_LIMIT``) is a broker policy named ``servicekit.Q``,
  which ``migrate`` sets through the management HTTP API (``<PREFIX>AMQP_MANAGEMENT_URL``).
  A policy can be changed at any time and applies at once to the queue's messages. RabbitMQ
  applies one policy per queue (the highest ``priority``): an operator's own policy matching
  these queues must have a lower priority than ``POLICY_PRIORITY`` or carry the same keys.

**Nothing lost on a cluster** (measured on a local three-node cluster of RabbitMQ 3.10): a
classic queue whose node is down silently drops what is routed to it, and the default
dead-lettering is at-most-once (20 of 20 lost while the target was unavailable). Hence quorum
queues throughout, ``x-dead-letter-strategy: at-least-once`` (which needs
``x-overflow: reject-publish``) on every queue that dead-letters, and every copy from one queue
to another published with confirms and ``mandatory`` (an unroutable copy raises, it is never
acknowledged as sent). ``Q.dlq`` has an explicit delivery limit far beyond any inspection:
inspecting (``dead-letters show``) returns messages, which counts as a delivery, and RabbitMQ 4
otherwise drops a quorum queue's message after 20.

**Migrating the queues of earlier versions** (``migrate``, every step resumable):

- ``Q.retry.N`` and ``Q.dlq`` were classic queues (``Q.retry.N`` with ``x-message-ttl``). Each is
  rebuilt under its own name: its messages are moved with confirms into the quorum queue
  ``<name>.migrating``, the classic queue is deleted only if empty (``if-empty``, atomic on the
  broker; if a message came in meanwhile the move runs again), declared again as a quorum queue,
  and the held messages are moved back (a retry with its step's current delay).
- ``Q`` was a quorum queue with ``x-delivery-limit`` as an argument. It keeps its consumers and
  its messages; the policy gives it at-least-once dead-lettering, and its delivery limit becomes
  the smaller of the old argument and the policy (RabbitMQ takes the minimum). Raising the limit
  above the old argument needs ``Q`` recreated with the workers stopped; ``migrate`` says so.
- A worker that starts before ``migrate`` ran finds the old queues, logs a warning and uses them
  as they are rather than failing.
"""

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika
import httpx
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue
from aio_pika.exceptions import ChannelNotFoundEntity, ChannelPreconditionFailed

from servicekit._bus import (
    RetryPolicy,
    dead_letter_queue_name,
    retry_queue_name,
    send_to_queue,
)
from servicekit._redelivery import copy_message

logger = logging.getLogger(__name__)

QUORUM = {"x-queue-type": "quorum"}
#: Dead-lettering that keeps a message until its target confirms it (needs reject-publish).
AT_LEAST_ONCE = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
#: The dead-letter queue's delivery limit: far beyond any number of inspections.
DEAD_LETTER_DELIVERY_LIMIT = 1_000_000
#: Priority of the policies set here (RabbitMQ applies the highest-priority matching policy).
POLICY_PRIORITY = 10
#: Suffix of the queue holding a queue's messages while it is rebuilt.
HOLDING_SUFFIX = ".migrating"
MANAGEMENT_PORT = 15672


def consumer_queue_arguments(queue: str) -> dict[str, Any]:
    return {
        **QUORUM,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_letter_queue_name(queue),
        **AT_LEAST_ONCE,
    }


def retry_queue_arguments(queue: str) -> dict[str, Any]:
    return {
        **QUORUM,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
        **AT_LEAST_ONCE,
    }


def dead_letter_queue_arguments() -> dict[str, Any]:
    return {**QUORUM, "x-delivery-limit": DEAD_LETTER_DELIVERY_LIMIT}


def policy_name(queue: str) -> str:
    return f"servicekit.{queue}"


def consumer_queue_policy(policy: RetryPolicy) -> dict[str, Any]:
    """What the broker policy of a consumer queue sets (what may change between deploys)."""
    return {
        "delivery-limit": policy.delivery_limit,
        # Also arguments of queues declared by this version; a queue of an earlier version
        # gets them from here (an argument, where present, wins over the policy).
        "dead-letter-strategy": "at-least-once",
        "overflow": "reject-publish",
    }


# --- declaring (workers and migrate) --------------------------------------------------------


async def declare_consumer_queue(
    connection: AbstractConnection, exchange_name: str, queue: str, routing_keys: Sequence[str]
) -> None:
    """Declare ``queue`` and its DLQ, and bind ``queue`` for ``routing_keys``.

    A queue declared by an earlier version with other arguments is used as it is (a warning says
    to run ``migrate``).
    """
    await _declare(connection, dead_letter_queue_name(queue), dead_letter_queue_arguments())
    await _declare(connection, queue, consumer_queue_arguments(queue))
    channel = await connection.channel()
    try:
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        declared = await channel.get_queue(queue, ensure=True)
        for key in routing_keys:
            await declared.bind(exchange, routing_key=key)
    finally:
        await channel.close()


async def declare_retry_queues(
    connection: AbstractConnection, queue: str, policy: RetryPolicy
) -> None:
    for step in range(len(policy.delays)):
        await _declare(connection, retry_queue_name(queue, step), retry_queue_arguments(queue))


async def declare_topology(
    connection: AbstractConnection,
    exchange_name: str,
    queue: str,
    routing_keys: Sequence[str],
    policy: RetryPolicy,
) -> None:
    """Every queue of a consumer, bound (never fails on queues of an earlier version)."""
    await declare_retry_queues(connection, queue, policy)
    await declare_consumer_queue(connection, exchange_name, queue, routing_keys)


async def _declare(connection: AbstractConnection, name: str, arguments: dict[str, Any]) -> bool:
    """Declare a durable queue on a channel of its own; False if it exists with other arguments.

    A refused declaration closes its channel, hence one channel per declaration.
    """
    channel = await connection.channel()
    try:
        await channel.declare_queue(name, durable=True, arguments=arguments)
    except ChannelPreconditionFailed as exc:
        logger.warning(
            "queue %s exists with other arguments (%s): using it as it is; "
            "run the service's migrate to rebuild it",
            name,
            exc,
        )
        return False
    finally:
        if not channel.is_closed:
            await channel.close()
    return True


# --- the management API (policies, what a queue was declared with) ---------------------------


def default_management_url(amqp_url: str) -> str:
    """The management API on the AMQP URL's host (port 15672), with the AMQP credentials."""
    parts = urlsplit(amqp_url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(
        ("http", f"{auth}{parts.hostname or '127.0.0.1'}:{MANAGEMENT_PORT}", "", "", "")
    )


def vhost_of(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).path.removeprefix("/")) or "/"


@dataclass(frozen=True)
class QueueInfo:
    name: str
    type: str
    arguments: dict[str, Any]
    messages: int
    consumers: int


class BrokerAdmin:
    """The few management-API calls topology needs, for one vhost."""

    def __init__(
        self, management_url: str, vhost: str, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        parts = urlsplit(management_url)
        self._base = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1])).rstrip("/")
        self._auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
        self._vhost = quote(vhost, safe="")
        self._transport = transport

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"{self._base}/api", auth=self._auth, timeout=10, transport=self._transport
        )

    async def queues(self, prefix: str) -> list[QueueInfo]:
        """The vhost's queues whose names start with ``prefix``."""
        async with self._client() as client:
            response = await client.get(
                f"/queues/{self._vhost}",
                params={"name": f"^{re.escape(prefix)}", "use_regex": "true"},
            )
            response.raise_for_status()
            found = response.json()
        items = found["items"] if isinstance(found, dict) else found
        return [
            QueueInfo(
                name=q["name"],
                type=q.get("type", "classic"),
                arguments=q.get("arguments") or {},
                messages=int(q.get("messages") or 0),
                consumers=int(q.get("consumers") or 0),
            )
            for q in items
            if q["name"].startswith(prefix)
        ]

    async def put_policy(self, name: str, pattern: str, definition: dict[str, Any]) -> None:
        async with self._client() as client:
            response = await client.put(
                f"/policies/{self._vhost}/{quote(name, safe='')}",
                json={
                    "pattern": pattern,
                    "definition": definition,
                    "priority": POLICY_PRIORITY,
                    "apply-to": "queues",
                },
            )
            response.raise_for_status()


# --- migrate ---------------------------------------------------------------------------------


async def migrate_topology(
    connection: AbstractConnection,
    admin: BrokerAdmin,
    exchange_name: str,
    queue: str,
    routing_keys: Sequence[str],
    policy: RetryPolicy,
) -> None:
    """Bring a consumer's queues to this version's topology and settings, losing no message."""
    existing = {q.name: q for q in await admin.queues(queue)}
    wanted: dict[str, dict[str, Any]] = {
        retry_queue_name(queue, step): retry_queue_arguments(queue)
        for step in range(len(policy.delays))
    }
    # Steps no longer configured: rebuilt too (they empty themselves into the queue after).
    for name in existing:
        if re.fullmatch(re.escape(queue) + r"\.retry\.\d+", name):
            wanted.setdefault(name, retry_queue_arguments(queue))
    wanted[dead_letter_queue_name(queue)] = dead_letter_queue_arguments()
    for name, arguments in wanted.items():
        current = existing.get(name)
        if current is not None and current.type == "classic":
            await _rebuild(connection, name, arguments, _delay_of(name, queue, policy))
        else:
            await _declare(connection, name, arguments)
            if name + HOLDING_SUFFIX in existing:  # a rebuild interrupted after the delete
                await _move_back(connection, name, _delay_of(name, queue, policy))
    await declare_consumer_queue(connection, exchange_name, queue, routing_keys)
    await admin.put_policy(
        policy_name(queue), f"^{re.escape(queue)}$", consumer_queue_policy(policy)
    )
    legacy_limit = (existing[queue].arguments if queue in existing else {}).get("x-delivery-limit")
    if isinstance(legacy_limit, int) and legacy_limit < policy.delivery_limit:
        logger.warning(
            "%s was declared with x-delivery-limit %d, which caps the configured %d: "
            "stop its workers, move its messages and declare it again to raise it",
            queue,
            legacy_limit,
            policy.delivery_limit,
        )


def _delay_of(name: str, queue: str, policy: RetryPolicy) -> float | None:
    """The delay a message moved back into ``name`` gets: its step's (the last for old steps)."""
    match = re.fullmatch(re.escape(queue) + r"\.retry\.(\d+)", name)
    if match is None:
        return None
    return policy.delays[min(int(match.group(1)), len(policy.delays) - 1)]


async def _rebuild(
    connection: AbstractConnection, name: str, arguments: dict[str, Any], delay: float | None
) -> None:
    """Declare the classic queue ``name`` again as a quorum queue, its messages kept."""
    holding = name + HOLDING_SUFFIX
    logger.info(
        "rebuilding classic queue %s as a quorum queue (messages held in %s)", name, holding
    )
    await _declare(connection, holding, QUORUM)
    while True:
        moved = await move_messages(connection, name, holding)
        channel = await connection.channel()
        try:
            # Atomic on the broker: refused if a message arrived since the last move.
            await channel.queue_delete(name, if_unused=False, if_empty=True)
        except ChannelPreconditionFailed:
            logger.info("%s received messages while they were moved; moving again", name)
            continue
        except ChannelNotFoundEntity:
            pass  # deleted by an earlier, interrupted run
        finally:
            if not channel.is_closed:
                await channel.close()
        logger.info("moved %d message(s) out of %s", moved, name)
        break
    if not await _declare(connection, name, arguments):
        raise RuntimeError(f"{name} was declared again by an earlier version during migrate")
    await _move_back(connection, name, delay)


async def _move_back(connection: AbstractConnection, name: str, delay: float | None) -> None:
    holding = name + HOLDING_SUFFIX
    moved = await move_messages(connection, holding, name, expiration=delay)
    channel = await connection.channel()
    try:
        # Only migrate publishes to a holding queue, and it is empty now.
        await channel.queue_delete(holding, if_unused=False, if_empty=False)
    finally:
        await channel.close()
    logger.info("moved %d message(s) back into %s", moved, name)


async def move_messages(
    connection: AbstractConnection, source: str, target: str, *, expiration: float | None = None
) -> int:
    """Move every message of ``source`` to ``target``: each confirmed there before it is acked."""
    channel: AbstractChannel = await connection.channel(publisher_confirms=True)
    moved = 0
    try:
        queue: AbstractQueue = await channel.get_queue(source, ensure=True)
        while (message := await queue.get(no_ack=False, fail=False, timeout=10)) is not None:
            copy = copy_message(message, {}, expiration=expiration)
            await send_to_queue(channel, target, copy, timeout=10)
            await message.ack()
            moved += 1
    finally:
        await channel.close()
    return moved
