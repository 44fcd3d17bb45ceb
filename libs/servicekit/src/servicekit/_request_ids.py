"""Request ids: what is accepted from a client's ``X-Request-ID``, and what replaces the rest.

A request id travels far: into every log line of the request, into the events it causes (the
envelope's ``correlation_id``, which is also the AMQP ``correlation_id`` property, a short string
of at most 255 bytes) and into HTTP headers the workers send on. A client once sent 200 times
``é`` as latin-1 bytes: 400 bytes in UTF-8, so the event could never be published and jammed its
outbox (issue 15). So an id is accepted only if it is printable ASCII without spaces and at most
``MAX_REQUEST_ID_LENGTH`` characters; anything else is replaced by a fresh id. The gateway applies
the same rule first (``deploy/gateway/nginx.conf.template``, ``deploy/local/gateway_config.py``);
the services check again because they are also reached without it.
"""

import re
import uuid

#: Longest request id accepted; a UUID is 36, a W3C trace id 32.
MAX_REQUEST_ID_LENGTH = 128
#: The gateway's copy of this rule is an nginx regex: keep them equal.
REQUEST_ID_PATTERN = rf"[!-~]{{1,{MAX_REQUEST_ID_LENGTH}}}"
_VALID = re.compile(REQUEST_ID_PATTERN)


def is_valid_request_id(value: str | None) -> bool:
    """True for printable ASCII (no space) of 1 to ``MAX_REQUEST_ID_LENGTH`` characters."""
    return value is not None and _VALID.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted_request_id(value: str | None) -> str:
    """``value`` if it is a valid request id, else a fresh one."""
    return value if value is not None and is_valid_request_id(value) else new_request_id()
