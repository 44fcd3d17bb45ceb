"""What a client written for the original backend relies on, through the gateway.

Each case comes from the documented defaults of Django REST Framework and SimpleJWT, which the
original ran with (issue 18's table is one case each):

- parsers: ``DEFAULT_PARSER_CLASSES`` is JSON, form (urlencoded) and multipart, so every body
  may come in any of the three;
- authentication: ``APIView.initial`` authenticates before it checks permissions, so a bad
  ``Authorization`` header is a 401 even on a public route;
- pagination: ``PageNumberPagination`` answers ``{count, next, previous, results}``, takes
  ``page=last`` (``last_page_strings``) and answers a page past the end, or not a number, with
  404 ``{"detail": "Invalid page."}``;
- URLs: ``<int:pk>`` matches digits only, so ``/api/recipes/abc/`` is a 404;
- errors: a 400 is ``{"field": ["message", ...]}``; an ``ImageField`` given another file answers
  "Upload a valid image..."; 401/403/404 carry ``detail``;
- SimpleJWT: ``/api/auth/token/`` answers ``{access, refresh}``; the access token carries
  ``token_type``, ``exp``, ``iat``, ``jti`` and ``user_id`` (``USER_ID_CLAIM``);
- the original's ``User.email`` is optional (Django's ``AbstractUser``).

This platform's additions (``code`` beside ``detail``, extra fields, refresh rotation, paths
without the trailing slash) are allowed; nothing the original sent may be missing.
"""

import base64
import csv
import io
import json
from typing import Any

import httpx
import pytest
from conftest import RunningPlatform
from PIL import ExifTags, Image
from platform_layout import LAYOUT

from compat.client import PASSWORD, access_token, bearer, register, unique
from servicekit.testing import wait_until

pytestmark = pytest.mark.integration

ENCODINGS = ["json", "urlencoded", "multipart"]


def post(gateway: httpx.Client, path: str, body: dict[str, str], encoding: str, **kw: Any) -> Any:
    """POST ``body`` the way a DRF client may: JSON, a urlencoded form or a multipart form."""
    if encoding == "json":
        return gateway.post(path, json=body, **kw)
    if encoding == "urlencoded":
        return gateway.post(path, data=body, **kw)
    # httpx sends multipart only with a file part; DRF's MultiPartParser ignores it here.
    return gateway.post(path, data=body, files={"attachment": ("a.txt", b"x")}, **kw)


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def consumed(platform: RunningPlatform, service: str, event_type: str) -> float:
    """Events of a type a worker has handled (its /metrics): the only sign an event arrived."""
    port = platform.health_port(service)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    queue = LAYOUT.service(service).queue
    labels = (f'queue="{queue}"', f'event_type="{event_type}"', 'outcome="handled"')
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("events_consumed_total{") and all(label in line for label in labels)
    )


def photo_with_location(size: tuple[int, int] = (1200, 900)) -> bytes:
    """A JPEG as a phone writes it: EXIF with the camera and a GPS position."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneCo"
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude] = (52.0, 13.0, 0.0)
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize(size).convert("RGB").save(
        buffer, "JPEG", quality=90, exif=exif
    )
    return buffer.getvalue()


def create_recipe(gateway: httpx.Client, token: str, title: str, **kw: Any) -> Any:
    return gateway.post("/api/recipes/", headers=bearer(token), data={"title": title}, **kw)


# --- register without email ---------------------------------------------------------------


def test_register_without_email_is_201_and_the_user_gets_no_mail(
    running_platform: RunningPlatform, gateway: httpx.Client
) -> None:
    before = {s: consumed(running_platform, s, "user.registered") for s in ("notifier", "backup")}
    name = unique("noemail")
    response = gateway.post("/api/auth/register/", json={"username": name, "password": PASSWORD})
    assert response.status_code == 201, response.text
    assert response.json()["email"] == ""  # Django's blank EmailField
    assert (
        gateway.get("/api/auth/me/", headers=bearer(access_token(gateway, name))).json()["email"]
        == ""
    )

    # Notifier and backup take the event (no retry, no dead letter) ...
    wait_until(
        lambda: all(consumed(running_platform, s, "user.registered") > before[s] for s in before),
        what="notifier and backup to handle the registration without an email",
    )
    # ... the weekly export keeps the user with an empty cell ...
    backup = running_platform.run("backup", "run-now")
    assert backup.returncode == 0, backup.stderr
    newest = max(running_platform.backup_dir.glob("users_*.csv"), key=lambda p: p.stat().st_mtime)
    with newest.open(newline="", encoding="utf-8") as file:
        rows = {row["Username"]: row for row in csv.DictReader(file)}
    assert rows[name]["Email"] == ""
    # ... and no mail is addressed to nobody.
    mails = (
        list(running_platform.mail_dir.rglob("*.eml")) if running_platform.mail_dir.is_dir() else []
    )
    assert not any(name in path.read_text(errors="replace") for path in mails)


# --- form bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_register_token_and_refresh_accept_every_default_parser(
    gateway: httpx.Client, encoding: str
) -> None:
    name = unique("form")
    body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
    registered = post(gateway, "/api/auth/register/", body, encoding)
    assert registered.status_code == 201, registered.text
    assert registered.json()["username"] == name
    pair = post(gateway, "/api/auth/token/", {"username": name, "password": PASSWORD}, encoding)
    assert pair.status_code == 200, pair.text
    assert {"access", "refresh"} <= set(pair.json())
    refreshed = post(
        gateway, "/api/auth/token/refresh/", {"refresh": pair.json()["refresh"]}, encoding
    )
    assert refreshed.status_code == 200, refreshed.text
    assert "access" in refreshed.json()
    wrong = post(gateway, "/api/auth/token/", {"username": name, "password": "nope"}, encoding)
    assert wrong.status_code == 401 and "detail" in wrong.json()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_rate_accepts_every_default_parser(gateway: httpx.Client, encoding: str) -> None:
    seller = register(gateway, "seller")
    recipe = create_recipe(gateway, access_token(gateway, seller["username"]), "Quince paste")
    assert recipe.status_code == 201, recipe.text
    customer = register(gateway, "customer")
    token = access_token(gateway, customer["username"])
    rated = post(
        gateway,
        f"/api/recipes/{recipe.json()['id']}/rate/",
        {"score": "4", "comment": "Fragrant"},
        encoding,
        headers=bearer(token),
    )
    assert rated.status_code == 200, rated.text
    assert (rated.json()["score"], rated.json()["avg_rating"], rated.json()["rating_count"]) == (
        4,
        4.0,
        1,
    )


# --- images --------------------------------------------------------------------------------


def test_a_file_that_is_not_an_image_is_a_400_on_original_image(gateway: httpx.Client) -> None:
    seller = register(gateway, "seller")
    token = access_token(gateway, seller["username"])
    response = create_recipe(
        gateway,
        token,
        "Not a photo",
        files={"original_image": ("notes.txt", b"just text", "text/plain")},
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["original_image"] == [
        "Upload a valid image. The file you uploaded was either not an image or a corrupted image."
    ]
    assert "detail" in body and "code" in body  # this platform's additions


def test_original_image_is_a_full_size_copy_without_metadata(gateway: httpx.Client) -> None:
    seller = register(gateway, "seller")
    token = access_token(gateway, seller["username"])
    upload = photo_with_location()
    created = create_recipe(
        gateway, token, "Quince tart", files={"original_image": ("tart.jpg", upload, "image/jpeg")}
    )
    assert created.status_code == 201, created.text
    assert "original_image" in created.json()
    assert created.json()["original_image"] is None  # pending: no copy yet, never the upload
    recipe_id = created.json()["id"]

    def processed() -> dict[str, Any] | None:
        body: dict[str, Any] = gateway.get(f"/api/recipes/{recipe_id}/").json()
        assert body["image_status"] != "failed", body
        return body if body["image_status"] == "ready" else None

    recipe = wait_until(processed, what="the image to be processed")
    copy = httpx.get(recipe["original_image"], timeout=10)
    assert copy.status_code == 200
    image = Image.open(io.BytesIO(copy.content))
    assert image.size == (1200, 900)
    assert not image.getexif()
    assert b"PhoneCo" not in copy.content and copy.content != upload
    listed = gateway.get("/api/recipes/", params={"seller": seller["username"]}).json()
    assert listed["results"][0]["original_image"] == recipe["original_image"]


# --- URLs, authentication -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/recipes/abc/", "/api/recipes/abc/ratings/", "/api/recipes/1.5/"]
)
def test_an_id_that_is_not_an_integer_is_a_404(gateway: httpx.Client, path: str) -> None:
    response = gateway.get(path)
    assert response.status_code == 404
    assert "detail" in response.json()


def test_a_bad_token_is_a_401_on_every_route(gateway: httpx.Client) -> None:
    seller = register(gateway, "seller")
    recipe = create_recipe(gateway, access_token(gateway, seller["username"]), "Membrillo")
    recipe_id = recipe.json()["id"]
    garbage = {"Authorization": "Bearer garbage"}
    for method, path in [
        ("GET", "/api/recipes/"),
        ("GET", f"/api/recipes/{recipe_id}/"),
        ("GET", f"/api/recipes/{recipe_id}/ratings/"),
        ("POST", f"/api/recipes/{recipe_id}/rate/"),
        ("POST", "/api/recipes/"),
        ("GET", "/api/auth/me/"),
    ]:
        response = gateway.request(method, path, headers=garbage, json={"score": 3})
        assert response.status_code == 401, (method, path, response.text)
        assert "detail" in response.json()
    assert gateway.get("/api/recipes/").status_code == 200  # anonymous is still fine


# --- pagination ----------------------------------------------------------------------------


def test_page_number_pagination_with_last_and_invalid_pages(gateway: httpx.Client) -> None:
    seller = register(gateway, "seller")
    token = access_token(gateway, seller["username"])
    for n in range(5):
        assert create_recipe(gateway, token, f"Quince {n}").status_code == 201
    mine = {"seller": seller["username"], "page_size": "2"}

    first = gateway.get("/api/recipes/", params=mine).json()
    assert set(first) == {"count", "next", "previous", "results"}
    assert first["count"] == 5 and first["previous"] is None and len(first["results"]) == 2
    last = gateway.get("/api/recipes/", params={**mine, "page": "last"})
    assert last.status_code == 200
    assert [r["title"] for r in last.json()["results"]] == ["Quince 0"]
    assert last.json()["next"] is None and "page=2" in last.json()["previous"]
    third = gateway.get("/api/recipes/", params={**mine, "page": "3"}).json()
    assert third["results"] == last.json()["results"]

    for page in ("4", "0", "abc", "99999999999", str(10**20)):
        response = gateway.get("/api/recipes/", params={**mine, "page": page})
        assert response.status_code == 404, page
        assert response.json()["detail"] == "Invalid page."

    ratings = f"/api/recipes/{first['results'][0]['id']}/ratings/"
    empty = gateway.get(ratings, params={"page": "last"}).json()
    assert (empty["count"], empty["results"]) == (0, [])
    huge = gateway.get(ratings, params={"page": str(10**20)})
    assert (huge.status_code, huge.json()["detail"]) == (404, "Invalid page.")


# --- tokens --------------------------------------------------------------------------------


def test_the_access_token_carries_simplejwt_claims(gateway: httpx.Client) -> None:
    account = register(gateway, "customer")
    pair = gateway.post(
        "/api/auth/token/", json={"username": account["username"], "password": PASSWORD}
    ).json()
    access, refresh = claims(pair["access"]), claims(pair["refresh"])
    assert access["user_id"] == account["id"]
    assert access["token_type"] == "access" and refresh["token_type"] == "refresh"
    assert {"exp", "iat", "jti"} <= set(access)
    assert access["exp"] > access["iat"]
    assert access["sub"] == str(account["id"]) and access["typ"] == "access"  # ours, kept


def test_field_errors_keep_drf_shape(gateway: httpx.Client) -> None:
    response = gateway.post("/api/auth/register/", json={"username": unique("x")})
    assert response.status_code == 400
    assert response.json() == {"password": ["This field is required."]}
