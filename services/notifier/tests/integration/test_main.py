"""``notifier migrate`` declares the worker's queue: events sent before the worker starts wait."""

import asyncio

import httpx
import pytest
from opentelemetry.trace import SpanKind

from contracts import RecipeImageReady, ScheduleTick, UserRegistered
from notifier.main import service
from notifier.settings import Settings
from servicekit._tracing import capture_spans
from servicekit.testing import (
    TokenFactory,
    Vhost,
    VhostAdmin,
    assert_queue_topology,
    routed_keys,
)

pytestmark = pytest.mark.integration

#: A route the test can call without setting anything up first.
TRACED_ROUTE = "/api/notifications/preferences/"


async def test_migrate_declares_the_worker_queue_with_its_bindings_and_retries(
    settings: Settings, amqp_url: str, vhost: Vhost, vhost_admin: VhostAdmin
) -> None:
    settings = settings.model_copy(update={"amqp_url": amqp_url})
    # The management API, where migrate sets the queue policies (a container maps it anywhere).
    settings = settings.model_copy(update={"amqp_management_url": vhost_admin.management_url})
    await asyncio.to_thread(service.migrate, settings)

    assert_queue_topology(vhost_admin, vhost, service.queue, settings.retry_policy)
    consumed = service.routing_keys
    assert {UserRegistered.event_type, ScheduleTick.event_type} <= set(consumed)
    # An event the worker does not consume is not routed to its queue.
    routed = await routed_keys(amqp_url, service.queue, [*consumed, RecipeImageReady.event_type])
    assert routed == set(consumed)


async def test_a_request_makes_one_server_span_and_a_probe_none(
    client: httpx.AsyncClient, token_factory: TokenFactory
) -> None:
    spans = capture_spans()
    spans.clear()
    headers = token_factory.headers(user_id=7, username="alice", role="customer")
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get(TRACED_ROUTE, headers=headers)).status_code == 200
    served = [span.name for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert served == [f"GET {TRACED_ROUTE}"]
