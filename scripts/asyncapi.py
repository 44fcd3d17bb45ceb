"""Print the AsyncAPI 3.0 document of every platform event, generated from libs/contracts."""

import sys
from typing import Any

import yaml

from contracts import EVENT_MODELS, EXCHANGE_NAME, Envelope
from contracts.catalogue import EVENT_FLOWS


def build_document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Envelope": Envelope.model_json_schema()}
    for (event_type, version), model in sorted(EVENT_MODELS.items()):
        producer, consumers = EVENT_FLOWS[event_type]
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        # The schema's title, not the class name: an older version's class is ``…V1``.
        name = f"{schema['title']}V{version}"
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
        messages[name] = {
            "name": event_type,
            "title": f"{event_type} v{version}",
            "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else "",
            "contentType": "application/json",
            "description": f"Published by {producer}; consumed by "
            f"{', '.join(consumers) or 'nobody yet'}. The body is the Envelope with this payload.",
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
        channel = channels.setdefault(event_type, {"address": event_type, "messages": {}})
        # Every version a consumer may still meet travels on the channel.
        channel["messages"][name] = {"$ref": f"#/components/messages/{name}"}
        channel |= {
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": EXCHANGE_NAME, "type": "topic", "durable": True},
                }
            },
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Recipe platform events",
            "version": "1.0.0",
            "description": "Every event travels in the Envelope (event_id = AMQP message_id) on "
            f"the topic exchange `{EXCHANGE_NAME}`; the routing key is the event type.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {"messages": messages, "schemas": schemas},
    }


if __name__ == "__main__":
    yaml.safe_dump(build_document(), sys.stdout, sort_keys=False, allow_unicode=True)
