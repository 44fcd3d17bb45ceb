"""``make demo``: a seller, a customer, a recipe with a photo and a rating, through the gateway.

Needs the platform running (``make up``). Every name is new on each run, so it can run again.
"""

import io
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "local"))
from platform_layout import LAYOUT

GATEWAY_PORT = os.environ.get("GATEWAY_PORT", str(LAYOUT.gateway_port))
GATEWAY = os.environ.get("GATEWAY_URL", f"http://127.0.0.1:{GATEWAY_PORT}")
PASSWORD = "Cardamom-Buns-77"


def photo() -> bytes:
    image = Image.new("RGB", (2400, 1600), (250, 200, 120))
    draw = ImageDraw.Draw(image)
    for ring in range(9):
        inset = ring * 60
        draw.ellipse(
            (600 + inset, 200 + inset, 1800 - inset, 1400 - inset), outline=(150, 90, 30), width=18
        )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def account(client: httpx.Client, role: str) -> tuple[str, str]:
    name = f"demo_{role}_{uuid.uuid4().hex[:6]}"
    body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com", "role": role}
    client.post("/api/auth/register/", json=body).raise_for_status()
    tokens = client.post("/api/auth/token/", json={"username": name, "password": PASSWORD})
    tokens.raise_for_status()
    print(f"registered {role:8} {name}")
    return name, tokens.json()["access"]


def wait_for_image(client: httpx.Client, recipe_id: int) -> dict[str, Any]:
    for _ in range(120):
        recipe: dict[str, Any] = client.get(f"/api/recipes/{recipe_id}/").json()
        if recipe["image_status"] in ("ready", "failed"):
            return recipe
        time.sleep(0.5)
    raise SystemExit("the image was not processed within a minute: see `make logs`")


def main() -> int:
    with httpx.Client(base_url=GATEWAY, timeout=30) as client:
        _, seller = account(client, "seller")
        _, customer = account(client, "customer")
        created = client.post(
            "/api/recipes/",
            headers={"Authorization": f"Bearer {seller}"},
            data={
                "title": "Cardamom buns",
                "description": "Swedish, sticky, warm",
                "ingredients": "flour, butter, cardamom, sugar",
                "instructions": "Knead, roll, bake.",
            },
            files={"image": ("buns.jpg", photo(), "image/jpeg")},
        )
        created.raise_for_status()
        recipe_id = created.json()["id"]
        print(f"created recipe {recipe_id}, image {created.json()['image_status']}")
        recipe = wait_for_image(client, recipe_id)
        print(f"image {recipe['image_status']}: {recipe['resized_image_url']}")
        rating = client.post(
            f"/api/recipes/{recipe_id}/rate/",
            headers={"Authorization": f"Bearer {customer}"},
            json={"score": 5, "comment": "Perfect with coffee"},
        )
        rating.raise_for_status()
        final = client.get(f"/api/recipes/{recipe_id}/").json()
        print(f"rated: avg_rating={final['avg_rating']} rating_count={final['rating_count']}")
        print(f"see it: {GATEWAY}/api/recipes/{recipe_id}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
