"""Keeps every mail it receives on SMTP port 1025 in memory and lists it Mailpit's way on 8025.

Only what the platform's tests read: ``GET /api/v1/messages`` (newest first, with ``ID``,
``To``, ``Subject``), ``GET /api/v1/message/<ID>/raw`` and ``GET /readyz``. Runs with Debian's
python3 and python3-aiosmtpd, no other dependency.
"""

import asyncio
import email
import json
import threading
import uuid
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

MESSAGES: list[dict[str, Any]] = []
LOCK = threading.Lock()


class Catcher:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(raw)
        entry = {
            "ID": uuid.uuid4().hex,
            "To": [{"Name": n, "Address": a} for n, a in getaddresses(parsed.get_all("To", []))],
            "Subject": str(parsed.get("Subject", "")),
            "raw": raw,
        }
        with LOCK:
            MESSAGES.insert(0, entry)
        return "250 OK"


class Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/readyz":
            self._send(200, b"ok", "text/plain")
        elif self.path.startswith("/api/v1/messages"):
            with LOCK:
                listed = [{k: v for k, v in m.items() if k != "raw"} for m in MESSAGES]
            body = {"total": len(listed), "messages_count": len(listed), "messages": listed}
            self._send(200, json.dumps(body).encode(), "application/json")
        elif self.path.startswith("/api/v1/message/") and self.path.endswith("/raw"):
            wanted = self.path.split("/")[4]
            with LOCK:
                found = [m["raw"] for m in MESSAGES if m["ID"] == wanted]
            if found:
                self._send(200, found[0], "message/rfc822")
            else:
                self._send(404, b"not found", "text/plain")
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    controller = Controller(Catcher(), hostname="0.0.0.0", port=1025)
    controller.start()
    try:
        ThreadingHTTPServer(("0.0.0.0", 8025), Api).serve_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    asyncio.set_event_loop(asyncio.new_event_loop())
    main()
