"""The gateway's nginx template: rendering, ``nginx -t``, and its routing against stand-in services.

The live tests run the real nginx binary (skipped where it is not installed) in front of small
HTTP servers that echo what they received, so routing, headers and nginx's own JSON errors are
checked for what they do, not for how the config reads.
"""

import contextlib
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gateway_config
import httpx
import pytest
from platform_layout import LAYOUT

from servicekit._request_ids import MAX_REQUEST_ID_LENGTH
from servicekit.testing import wait_until

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "gateway" / "entrypoint.sh"

needs_nginx = pytest.mark.skipif(
    gateway_config.nginx_binary() is None, reason="nginx is not installed"
)


def _values(
    tmp_path: Path,
    port: int = LAYOUT.gateway_port,
    *,
    public_read_cache: bool = True,
    **upstreams: str,
) -> dict[str, str]:
    return gateway_config.local_values(
        run_dir=tmp_path / "run",
        log_dir=tmp_path / "log",
        media_root=tmp_path / "media",
        port=port,
        public_read_cache=public_read_cache,
        **upstreams,
    )


def test_every_placeholder_gets_a_value(tmp_path: Path) -> None:
    rendered = gateway_config.render(gateway_config.TEMPLATE.read_text(), _values(tmp_path))

    assert gateway_config.PLACEHOLDER.search(rendered) is None
    assert f"listen 127.0.0.1:{LAYOUT.gateway_port};" in rendered
    # nginx's own (lower-case) variables pass through untouched.
    assert "$request_id" in rendered and "$http_x_request_id" in rendered


def test_a_missing_value_is_refused(tmp_path: Path) -> None:
    values = _values(tmp_path)
    del values["MEDIA_ROOT"]

    with pytest.raises(KeyError, match="MEDIA_ROOT"):
        gateway_config.render(gateway_config.TEMPLATE.read_text(), values)


def test_compose_entrypoint_substitutes_exactly_the_template_placeholders() -> None:
    listed = re.search(r"PLACEHOLDERS='([^']*)'", ENTRYPOINT.read_text())
    assert listed is not None
    names = set(re.findall(r"\$\{([A-Z0-9_]+)\}", listed.group(1)))

    assert names == gateway_config.placeholders(gateway_config.TEMPLATE.read_text())


@pytest.mark.skipif(shutil.which("envsubst") is None, reason="envsubst is not installed")
def test_envsubst_renders_what_the_python_renderer_renders(tmp_path: Path) -> None:
    values = _values(tmp_path)
    listed = re.search(r"PLACEHOLDERS='([^']*)'", ENTRYPOINT.read_text())
    assert listed is not None

    rendered = subprocess.run(
        ["envsubst", listed.group(1)],
        input=gateway_config.TEMPLATE.read_text(),
        env=values,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert rendered == gateway_config.render(gateway_config.TEMPLATE.read_text(), values)


@needs_nginx
def test_nginx_accepts_the_rendered_config(tmp_path: Path) -> None:
    values = _values(tmp_path)
    config = gateway_config.write_config(values, tmp_path / "run" / "nginx.conf")

    result = subprocess.run(
        gateway_config.nginx_command(config, values, test=True), capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr


# --- live ----------------------------------------------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with what it saw, and a request id of its own (to be hidden)."""

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        body = json.dumps(
            {
                "service": self.server.name,  # type: ignore[attr-defined]
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Request-ID", "set-by-the-service")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _echo_server(name: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.name = name  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _nginx(
    tmp_path: Path, *, public_read_cache: bool = True, **upstreams: str
) -> Iterator[httpx.Client]:
    """The rendered gateway on a free port in front of ``upstreams``, and a client of it."""
    port = _free_port()
    values = _values(tmp_path, port, public_read_cache=public_read_cache, **upstreams)
    config = gateway_config.write_config(values, tmp_path / "run" / "nginx.conf")
    nginx = subprocess.Popen(gateway_config.nginx_command(config, values), start_new_session=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        for _ in range(100):
            try:
                client.get("/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield client
    finally:
        client.close()
        nginx.terminate()
        nginx.wait(timeout=10)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    """nginx on a free port in front of echo servers for auth and recipes (notifier is down)."""
    if gateway_config.nginx_binary() is None:
        pytest.skip("nginx is not installed")
    tmp_path = tmp_path_factory.mktemp("gateway")
    auth, recipes = _echo_server("auth"), _echo_server("recipes")
    try:
        with _nginx(
            tmp_path,
            auth_upstream=f"127.0.0.1:{auth.server_address[1]}",
            recipes_upstream=f"127.0.0.1:{recipes.server_address[1]}",
            notifier_upstream=f"127.0.0.1:{_free_port()}",  # nothing listens: 502
        ) as client:
            yield client, tmp_path / "media"
    finally:
        for server in (auth, recipes):
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/auth/register/", "auth"),
        ("/api/auth/openapi.json", "auth"),
        ("/api/recipes/", "recipes"),
        ("/api/recipes", "recipes"),
        ("/api/recipes?page=2", "recipes"),
        ("/api/recipes/7/rate/", "recipes"),
        ("/api/recipes/docs", "recipes"),
    ],
)
def test_routes_each_prefix_to_its_service(
    gateway: tuple[httpx.Client, Path], path: str, service: str
) -> None:
    client, _ = gateway
    response = client.get(path)

    assert response.status_code == 200
    assert response.json()["service"] == service
    assert response.json()["path"] == path


def test_sets_a_request_id_and_forwarding_headers(gateway: tuple[httpx.Client, Path]) -> None:
    client, _ = gateway
    response = client.get("/api/recipes/")
    seen = response.json()["headers"]

    assert seen["x-request-id"]
    assert response.headers.get_list("x-request-id") == [seen["x-request-id"]]
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == client.base_url.netloc.decode()


def test_keeps_the_clients_request_id(gateway: tuple[httpx.Client, Path]) -> None:
    client, _ = gateway
    response = client.get("/api/auth/me/", headers={"X-Request-ID": "trace-me-42"})

    assert response.json()["headers"]["x-request-id"] == "trace-me-42"
    assert response.headers.get_list("x-request-id") == ["trace-me-42"]


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param("é".encode("latin-1") * 200, id="200-latin-1-e-acute"),
        pytest.param(b"a" * 129, id="over-long-ascii"),
        pytest.param(b"has space", id="space"),
    ],
)
def test_replaces_a_request_id_that_is_not_short_printable_ascii(
    gateway: tuple[httpx.Client, Path], sent: bytes
) -> None:
    """It would reach AMQP properties and outgoing headers it does not fit (issue 15)."""
    client, _ = gateway
    response = client.get("/api/auth/me/", headers=[(b"X-Request-ID", sent)])

    forwarded = response.json()["headers"]["x-request-id"]
    assert forwarded.encode() != sent
    assert re.fullmatch(r"[0-9a-f]{32}", forwarded), "nginx's own $request_id"
    assert response.headers.get_list("x-request-id") == [forwarded]


def test_keeps_a_request_id_of_the_longest_accepted_length(
    gateway: tuple[httpx.Client, Path],
) -> None:
    client, _ = gateway
    longest = "r" * MAX_REQUEST_ID_LENGTH
    response = client.get("/api/auth/me/", headers={"X-Request-ID": longest})

    assert response.json()["headers"]["x-request-id"] == longest


@pytest.mark.parametrize(
    "path",
    [
        "/internal/images/1/1",
        "/api/recipes/internal/images/1/1",
        "/api/auth/metrics",
        "/api/recipes/readyz",
        "/elsewhere",
    ],
)
def test_internal_and_unknown_paths_are_json_404s(
    gateway: tuple[httpx.Client, Path], path: str
) -> None:
    client, _ = gateway
    response = client.get(path)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "Not found.", "code": "not_found"}
    assert response.headers["x-request-id"]


def test_a_body_over_the_upload_limit_is_refused_with_json_413(
    gateway: tuple[httpx.Client, Path],
) -> None:
    client, _ = gateway
    response = client.post("/api/recipes/", content=b"x" * (10 * 1024 * 1024 + 1))

    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"


def test_a_body_within_the_limit_passes(gateway: tuple[httpx.Client, Path]) -> None:
    client, _ = gateway
    response = client.post("/api/recipes/", content=b"x" * (1024 * 1024))

    assert response.status_code == 200


def test_a_service_that_is_down_is_a_json_502(gateway: tuple[httpx.Client, Path]) -> None:
    client, _ = gateway
    response = client.get("/api/notifications/preferences/")

    assert response.status_code == 502
    assert response.json() == {"detail": "The service is unavailable.", "code": "bad_gateway"}


def test_serves_media_files_and_json_404_for_missing_ones(
    gateway: tuple[httpx.Client, Path],
) -> None:
    client, media_root = gateway
    (media_root / "recipes" / "3").mkdir(parents=True)
    (media_root / "recipes" / "3" / "v1-800.jpg").write_bytes(b"\xff\xd8\xff-image-bytes")

    found = client.get("/media/recipes/3/v1-800.jpg")
    missing = client.get("/media/recipes/3/v2-800.jpg")

    assert found.status_code == 200
    assert found.content == b"\xff\xd8\xff-image-bytes"
    assert found.headers["content-type"] == "image/jpeg"
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"


def test_sign_in_is_rate_limited_with_json_429(gateway: tuple[httpx.Client, Path]) -> None:
    """Last: it exhausts the token endpoint's budget for this client address."""
    client, _ = gateway
    statuses = [client.post("/api/auth/token/", json={}).status_code for _ in range(30)]
    limited = client.post("/api/auth/token/", json={})

    assert statuses.count(200) >= 1
    assert 429 in statuses
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert limited.headers["retry-after"] == "1"
    # Other endpoints are not throttled by it.
    assert client.get("/api/auth/me/").status_code == 200


# --- the public read cache ---------------------------------------------------------------------


class _PublicReads(BaseHTTPRequestHandler):
    """Answers as the recipes API answers a public read: a versioned ETag, a max-age, a 304."""

    server: "_PublicReadsServer"

    def do_GET(self) -> None:
        if_none_match = self.headers.get("If-None-Match")
        authorization = self.headers.get("Authorization")
        self.server.seen.append((if_none_match, authorization))
        etag = f'W/"v{self.server.version}"'
        status = 304 if if_none_match == etag else 200
        body = b"" if status == 304 else json.dumps({"version": self.server.version}).encode()
        self.send_response(status)
        self.send_header("ETag", etag)
        # Public even when signed in: keeping those out of the cache is the gateway's own doing.
        self.send_header("Cache-Control", "public, max-age=1, must-revalidate")
        self.send_header("Vary", "Authorization")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _PublicReadsServer(ThreadingHTTPServer):
    version = 1
    #: (If-None-Match, Authorization) of every request that reached it.
    seen: list[tuple[str | None, str | None]]

    def last_seen(self) -> tuple[str | None, str | None]:
        return self.seen[-1]


@needs_nginx
def test_public_reads_are_cached_revalidated_and_bypassed_when_signed_in(
    tmp_path: Path,
) -> None:
    recipes = _PublicReadsServer(("127.0.0.1", 0), _PublicReads)
    recipes.seen = []
    threading.Thread(target=recipes.serve_forever, daemon=True).start()
    path = "/api/recipes/?page=1"
    try:
        with _nginx(
            tmp_path,
            auth_upstream=f"127.0.0.1:{_free_port()}",
            recipes_upstream=f"127.0.0.1:{recipes.server_address[1]}",
            notifier_upstream=f"127.0.0.1:{_free_port()}",
        ) as client:
            first, second = client.get(path), client.get(path)
            assert first.headers["x-cache-status"] == "MISS"
            assert second.headers["x-cache-status"] == "HIT"
            assert second.json() == first.json() == {"version": 1}
            assert len(recipes.seen) == 1

            signed_in = client.get(path, headers={"Authorization": "Bearer token"})
            assert signed_in.headers["x-cache-status"] == "BYPASS"
            assert recipes.last_seen() == (None, "Bearer token")
            # ... and its answer was not stored for anyone else.
            assert client.get(path).headers["x-cache-status"] == "HIT"
            assert len(recipes.seen) == 2

            def served(status: str) -> httpx.Response | None:
                response = client.get(path)
                return response if response.headers["x-cache-status"] == status else None

            # Past max-age, the gateway asks again with the ETag it holds; a 304 keeps its copy.
            revalidated = wait_until(lambda: served("REVALIDATED"), what="a revalidation")
            assert revalidated.json() == {"version": 1}
            assert recipes.last_seen() == (first.headers["etag"], None)

            # A change is served once the copy is past max-age: that is how stale a read can be.
            recipes.version = 2
            changed = wait_until(lambda: served("EXPIRED"), what="the changed list")
            assert changed.json() == {"version": 2}
    finally:
        recipes.shutdown()
        recipes.server_close()


@needs_nginx
def test_the_public_read_cache_can_be_turned_off(tmp_path: Path) -> None:
    """With the cache off every anonymous read reaches the API (and none waits on its lock)."""
    recipes = _PublicReadsServer(("127.0.0.1", 0), _PublicReads)
    recipes.seen = []
    threading.Thread(target=recipes.serve_forever, daemon=True).start()
    try:
        with _nginx(
            tmp_path,
            public_read_cache=False,
            auth_upstream=f"127.0.0.1:{_free_port()}",
            recipes_upstream=f"127.0.0.1:{recipes.server_address[1]}",
            notifier_upstream=f"127.0.0.1:{_free_port()}",
        ) as client:
            answers = [client.get("/api/recipes/?page=1") for _ in range(3)]
            assert [a.json() for a in answers] == [{"version": 1}] * 3
            assert all("x-cache-status" not in a.headers for a in answers)
            assert len(recipes.seen) == 3
    finally:
        recipes.shutdown()
        recipes.server_close()
