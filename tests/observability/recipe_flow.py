"""One recipe creation across services, run in this process so its spans and logs can be read.

``recipe_flow`` starts what ``make up`` starts for an image to be resized, wired as each
service's ``main`` wires it: the recipes API (uvicorn on a free port, relaying its outbox), the
recipes worker (applies ``recipe.image_ready``), the media worker (consumer, pipeline with local
storage and its render processes) and nginx rendered from the gateway template in front of the
API. Only auth is missing: a ``TokenFactory`` signs the seller's token and the API trusts it.
Each test gets fresh databases' contents and a vhost of its own. The fixtures are in
``flow_fixtures``; this module holds what tests call.
"""

import io
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from servicekit.testing import TokenFactory, eventually

FAST_RETRIES = (0.05, 0.1)
SELLER = {"user_id": 41, "username": "chef", "role": "seller"}


def photo_jpeg(width: int = 1200, height: int = 900) -> bytes:
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metric_value(exposition: str, sample: str, **labels: str) -> float:
    """The sum of the samples called ``sample`` whose labels include ``labels`` (0 if none)."""
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for found in family.samples:
            if found.name == sample and labels.items() <= found.labels.items():
                total += found.value
    return total


def metric_names(exposition: str) -> set[str]:
    """Every metric declared (``# TYPE``), with or without samples yet; counters end in _total."""
    return {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(exposition)
    }


@dataclass(frozen=True)
class Gateway:
    url: str
    access_log: Path


@dataclass
class RecipeFlow:
    """The running services, and how a test acts on them."""

    recipes_url: str
    #: nginx in front of the API, or ``None`` where nginx is not installed (requests then go
    #: straight to the API, with the headers nginx would pass on).
    gateway: Gateway | None
    media_health: FastAPI
    recipes_worker_health: FastAPI
    amqp_url: str
    token_factory: TokenFactory

    @property
    def entry_url(self) -> str:
        return self.gateway.url if self.gateway else self.recipes_url

    async def create_recipe(self, *, headers: dict[str, str]) -> dict[str, Any]:
        """POST a recipe with a JPEG where clients send it (the gateway); 201 expected."""
        async with httpx.AsyncClient(base_url=self.entry_url, timeout=30) as client:
            response = await client.post(
                "/api/recipes/",
                headers={**self.token_factory.headers(**SELLER), **headers},  # type: ignore[arg-type]
                data={"title": "Gooseberry crumble", "ingredients": "gooseberries, butter"},
                files={"image": ("crumble.jpg", photo_jpeg(), "image/jpeg")},
            )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_until_image_ready(self, recipe_id: int) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.recipes_url, timeout=10) as client:

            async def ready() -> dict[str, Any] | None:
                body: dict[str, Any] = (await client.get(f"/api/recipes/{recipe_id}/")).json()
                assert body["image_status"] != "failed", body
                return body if body["image_status"] == "ready" else None

            found: dict[str, Any] = await eventually(ready, what="recipe.image_ready applied")
            return found

    async def scrape(self, where: str) -> str:
        """``/metrics`` of the recipes API (its port), the media or the recipes worker."""
        if where == "recipes-api":
            transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport()
            base_url = self.recipes_url
        else:
            app = self.media_health if where == "media" else self.recipes_worker_health
            transport, base_url = httpx.ASGITransport(app=app), "http://worker"
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            response = await client.get("/metrics")
        assert response.status_code == 200
        return response.text
