"""Print the AsyncAPI 3.1 document of the platform's wire, generated from what the code registers.

- Messages: every message body is the ``Envelope``; each event's schema is the envelope's
  ``payload`` field, with ``type`` and ``version`` fixed to that event's.
- Headers: what ``servicekit._bus.envelope_message`` sets (event type and version) and what the
  outbox relay copies from the row (W3C trace context); retry and dead-letter headers are added
  by ``servicekit._redelivery`` on the way to ``<queue>.retry.N`` and ``<queue>.dlq``.
- Channels and operations: one channel per routing key on the topic exchange with a ``send``
  operation for its producer (``contracts.catalogue``); one channel per consumer queue with a
  ``receive`` operation, built from each service's spec (``<name>.main:service``: its handler
  table is its bindings, its default retry policy its queue arguments). The retry and dead-letter
  queues are named in the queue's description: they carry the same messages, nothing new.

``make asyncapi`` writes docs/asyncapi.yaml; tests/docs checks it is current and valid (the
official AsyncAPI parser, no errors, no warnings).
"""

import importlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from contracts import EVENT_MODELS, EXCHANGE_NAME, Envelope
from contracts.catalogue import EVENT_FLOWS
from servicekit._bus import RetryPolicy, dead_letter_queue_name, retry_queue_name
from servicekit._redelivery import ATTEMPT_HEADER, ORIGINAL_QUEUE_HEADER, REASON_HEADER
from servicekit._settings import DEFAULT_AMQP_URL
from servicekit._tracing import TRACE_HEADERS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "local"))
from platform_layout import LAYOUT

AMQP_BINDING_VERSION = "0.3.0"
#: The services whose worker consumes a queue (deploy/platform.toml; auth's worker only relays
#: its outbox).
CONSUMING_SERVICES = tuple(s.name for s in LAYOUT.consumers)


@dataclass(frozen=True)
class Registration:
    """What one service's worker consumer declares: its queue, bindings and retry policy."""

    queue: str
    routing_keys: list[str]
    retry_policy: RetryPolicy


def _registration(name: str) -> Registration:
    """The service's queue and bindings as its spec declares them (``servicekit.service``)."""
    service = importlib.import_module(f"{name}.main").service
    policy = service.settings.model_construct().retry_policy  # the defaults
    return Registration(service.queue, service.routing_keys, policy)


def registered_consumers() -> list[Registration]:
    """Every consumer, each built in a process of its own: the services' table models share
    SQLModel's metadata, so two services cannot be imported into one process."""
    running = {
        service: subprocess.Popen(
            [sys.executable, __file__, "--consumer-of", service],
            stdout=subprocess.PIPE,
            text=True,
        )
        for service in CONSUMING_SERVICES
    }
    registrations = []
    for service, process in running.items():
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"building the consumer of {service} failed (see above)")
        found = json.loads(out)
        policy = RetryPolicy(tuple(found["delays"]), found["delivery_limit"])
        registrations.append(Registration(found["queue"], found["routing_keys"], policy))
    return registrations


def _print_consumer(service: str) -> None:
    found = _registration(service)
    policy = found.retry_policy
    print(
        json.dumps(
            {
                "queue": found.queue,
                "routing_keys": found.routing_keys,
                "delays": policy.delays,
                "delivery_limit": policy.delivery_limit,
            }
        )
    )


def _string(description: str) -> dict[str, str]:
    return {"type": "string", "description": description}


def message_headers() -> dict[str, Any]:
    properties: dict[str, Any] = {
        "x-event-type": _string("the event type, as the envelope's `type`"),
        "x-event-version": {"type": "integer", "description": "the envelope's `version`"},
        ATTEMPT_HEADER: {
            "type": "integer",
            "description": "failed attempts so far (on messages coming back from a retry queue)",
        },
        REASON_HEADER: _string("why the last attempt failed (in the dead-letter queue)"),
        ORIGINAL_QUEUE_HEADER: _string("the queue the message failed in (dead-letter queue)"),
    }
    for name in TRACE_HEADERS:
        properties[name] = _string(f"W3C trace context `{name}` of the request that caused it")
    return {
        "type": "object",
        "required": ["x-event-type", "x-event-version"],
        "properties": properties,
    }


def queue_arguments(queue: str, policy: RetryPolicy) -> dict[str, Any]:
    """The arguments ``Bus.declare_consumer_queue`` declares ``queue`` with."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": policy.delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_letter_queue_name(queue),
    }


def _message_name(model: type[BaseModel], version: int) -> str:
    # The schema's title, not the class name: an older version's class is ``…V1``.
    return f"{model.model_json_schema()['title']}V{version}"


def build_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Envelope": Envelope.model_json_schema()}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    consumers = registered_consumers()
    by_type: dict[str, list[str]] = {}
    for (event_type, version), model in sorted(EVENT_MODELS.items()):
        name = _message_name(model, version)
        by_type.setdefault(event_type, []).append(name)
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
        receivers = [c.queue for c in consumers if event_type in c.routing_keys]
        messages[name] = {
            "name": event_type,
            "title": f"{event_type} v{version}",
            "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else "",
            "description": f"Published by {EVENT_FLOWS[event_type][0]}; received from "
            f"{', '.join(f'`{q}`' for q in receivers) or 'no queue yet'}.",
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/MessageHeaders"},
            "correlationId": {"$ref": "#/components/correlationIds/CorrelationId"},
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/Envelope"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": event_type},
                            "version": {"const": version},
                            "payload": {"$ref": f"#/components/schemas/{name}"},
                        },
                    },
                ]
            },
            "bindings": {
                "amqp": {"messageType": event_type, "bindingVersion": AMQP_BINDING_VERSION}
            },
        }
    schemas["MessageHeaders"] = message_headers()

    exchange = {"name": EXCHANGE_NAME, "type": "topic", "durable": True, "autoDelete": False}
    for event_type, names in by_type.items():
        channel = f"event_{event_type.replace('.', '_')}"
        channels[channel] = {
            "address": event_type,
            "title": f"routing key {event_type}",
            "description": f"Events `{event_type}` on the topic exchange `{EXCHANGE_NAME}`.",
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
            "bindings": {
                "amqp": {"is": "routingKey", "exchange": exchange, "bindingVersion": "0.3.0"}
            },
        }
        producer = EVENT_FLOWS[event_type][0]
        operations[f"send_{channel.removeprefix('event_')}"] = {
            "action": "send",
            "title": f"{producer} publishes {event_type}",
            "description": "Through the transactional outbox: the relay publishes persistently "
            "and waits for the broker's confirm; `message_id` is the envelope's `event_id`.",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{n}"} for n in names],
            "bindings": {"amqp": {"deliveryMode": 2, "timestamp": True, "bindingVersion": "0.3.0"}},
        }

    for consumer in consumers:
        queue = consumer.queue
        channel = f"queue_{queue.replace('.', '_')}"
        names = [n for key in consumer.routing_keys for n in by_type[key]]
        retries = ", ".join(
            f"`{retry_queue_name(queue, step)}` ({delay:g} s)"
            for step, delay in enumerate(consumer.retry_policy.delays)
        )
        channels[channel] = {
            "address": queue,
            "title": f"queue {queue}",
            "description": f"Bound to `{EXCHANGE_NAME}` for {', '.join(consumer.routing_keys)}. "
            f"A failed message waits in {retries}, then is parked in "
            f"`{dead_letter_queue_name(queue)}`.",
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
            "bindings": {
                "amqp": {
                    "is": "queue",
                    "queue": {
                        "name": queue,
                        "durable": True,
                        "exclusive": False,
                        "autoDelete": False,
                    },
                    "x-bindings": [
                        {"exchange": EXCHANGE_NAME, "routingKey": key}
                        for key in consumer.routing_keys
                    ],
                    "x-arguments": queue_arguments(queue, consumer.retry_policy),
                    "bindingVersion": "0.3.0",
                }
            },
        }
        operations[f"receive_{channel.removeprefix('queue_')}"] = {
            "action": "receive",
            "title": f"{queue.split('.')[0]} consumes {queue}",
            "description": "Each event is applied once (inbox) and acknowledged after commit.",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{n}"} for n in names],
            "bindings": {"amqp": {"ack": True, "bindingVersion": "0.3.0"}},
        }

    host = DEFAULT_AMQP_URL.split("@", 1)[1].rstrip("/")
    return {
        "asyncapi": "3.1.0",
        "info": {
            "title": "Recipe platform events",
            "version": "1.0.0",
            "description": "Every event travels in the Envelope (`event_id` = AMQP `message_id`) "
            f"on the topic exchange `{EXCHANGE_NAME}`; the routing key is the event type. "
            "Generated by scripts/asyncapi.py from the contracts and the services' consumers.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "development": {
                "host": host,
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "pathname": "/",
                "description": "RabbitMQ on the developer's machine (`make up`, the tests)",
            },
            "production": {
                "host": "rabbitmq:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "pathname": "/",
                "description": "The RabbitMQ cluster of deploy/k8s (Service `rabbitmq`)",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas,
            "correlationIds": {
                "CorrelationId": {
                    "description": "The request (or event) that caused this one; also the "
                    "AMQP `correlation_id`.",
                    "location": "$message.payload#/correlation_id",
                }
            },
        },
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--consumer-of"]:
        _print_consumer(sys.argv[2])
        raise SystemExit
    yaml.safe_dump(build_document(), sys.stdout, sort_keys=False, allow_unicode=True)
