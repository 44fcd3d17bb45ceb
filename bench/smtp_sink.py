"""A local SMTP server that accepts every mail and keeps none (the digest scenario's receiver).

    python bench/smtp_sink.py PORT

Runs until SIGTERM; then prints how many messages, recipients and bytes it accepted (JSON).
"""

import json
import signal
import sys
import threading
from typing import Any

from aiosmtpd.controller import Controller


class CountingHandler:
    def __init__(self) -> None:
        self.messages = 0
        self.recipients = 0
        self.bytes = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages += 1
        self.recipients += len(envelope.rcpt_tos)
        self.bytes += len(envelope.original_content or b"")
        return "250 OK"


def main() -> None:
    handler = CountingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=int(sys.argv[1]))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    controller.start()
    print("listening", flush=True)
    stopped.wait()
    controller.stop()
    print(
        json.dumps(
            {"messages": handler.messages, "recipients": handler.recipients, "bytes": handler.bytes}
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
