"""A local stand-in for Cloudinary's upload and admin APIs that checks what the SDK sends.

Uploads must be signed with the API secret (recomputed with ``cloudinary.utils``), carry a
fresh timestamp, a ``recipes/...`` public id with ``overwrite`` and a decodable image; the answer
has the fields Cloudinary returns. ``fail_next`` makes the next uploads answer an error status.
"""

import base64
import io
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cloudinary.utils
from PIL import Image

PUBLIC_ID = re.compile(r"^recipes/\d+/v\d+/\w+$")
#: Not part of the signature, as Cloudinary documents.
UNSIGNED = frozenset({"file", "api_key", "signature", "resource_type", "cloud_name"})


@dataclass(frozen=True)
class Upload:
    public_id: str
    data: bytes
    params: dict[str, str]


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    fields: dict[str, bytes] = {}
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]+)"', head)
        assert name is not None, head
        fields[name.group(1).decode()] = content.removesuffix(b"\r\n")
    return fields


@dataclass
class CloudinaryStandIn:
    cloud_name: str = "test-cloud"
    api_key: str = "1234567890"
    api_secret: str = "stand-in-secret"
    uploads: list[Upload] = field(default_factory=list)
    assets: dict[str, bytes] = field(default_factory=dict)
    deleted_prefixes: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "CloudinaryStandIn":
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status, answer = standin.upload(self.path, self.headers["Content-Type"], body)
                self._reply(status, answer)

            def do_DELETE(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = standin.delete(
                    self.path, self.headers.get("Authorization", ""), body
                )
                self._reply(status, answer)

            def _reply(self, status: int, answer: dict[str, Any]) -> None:
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _refuse(self, status: int, message: str) -> tuple[int, dict[str, Any]]:
        self.rejected.append(message)
        return status, {"error": {"message": message}}

    def upload(self, path: str, content_type: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if path != f"/v1_1/{self.cloud_name}/image/upload":
            return self._refuse(404, f"unknown path {path}")
        with self._lock:
            if self.fail_next:
                return self._refuse(self.fail_next.pop(0), "injected failure")
        fields = parse_multipart(body, content_type)
        params = {k: v.decode() for k, v in fields.items() if k != "file"}
        signed = {k: v for k, v in params.items() if k not in UNSIGNED}
        expected = cloudinary.utils.api_sign_request(signed, self.api_secret)
        if params.get("api_key") != self.api_key or params.get("signature") != expected:
            return self._refuse(401, "Invalid Signature")
        if abs(time.time() - int(params.get("timestamp", "0"))) > 3600:
            return self._refuse(400, "Stale request")
        public_id = params.get("public_id", "")
        if not PUBLIC_ID.match(public_id) or params.get("overwrite") not in ("1", "true"):
            return self._refuse(400, f"unexpected public_id/overwrite: {params}")
        data = fields.get("file", b"")
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                width, height, fmt = image.width, image.height, str(image.format).lower()
        except Exception:
            return self._refuse(400, "Invalid image file")
        fmt = "jpg" if fmt == "jpeg" else fmt
        with self._lock:
            self.uploads.append(Upload(public_id, data, params))
            self.assets[public_id] = data
        version = int(time.time())
        url = f"res.cloudinary.test/{self.cloud_name}/image/upload/v{version}/{public_id}.{fmt}"
        return 200, {
            "public_id": public_id,
            "version": version,
            "signature": expected,
            "width": width,
            "height": height,
            "format": fmt,
            "resource_type": "image",
            "bytes": len(data),
            "type": "upload",
            "url": f"http://{url}",
            "secure_url": f"https://{url}",
        }

    def delete(self, path: str, authorization: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """The admin API's delete by prefix (parameters in a JSON body or the query)."""
        parts = urlsplit(path)
        if parts.path != f"/v1_1/{self.cloud_name}/resources/image/upload":
            return self._refuse(404, f"unknown path {path}")
        credentials = base64.b64encode(f"{self.api_key}:{self.api_secret}".encode()).decode()
        if authorization != f"Basic {credentials}":
            return self._refuse(401, "Invalid credentials")
        params = json.loads(body) if body else {}
        prefix = params.get("prefix") or parse_qs(parts.query)["prefix"][0]
        with self._lock:
            self.deleted_prefixes.append(prefix)
            gone = [pid for pid in self.assets if pid.startswith(prefix)]
            for pid in gone:
                del self.assets[pid]
        return 200, {"deleted": dict.fromkeys(gone, "deleted"), "partial": False}
