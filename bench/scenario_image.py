"""Image: a 4000x3000 photo-like JPEG through the whole platform, against Pillow alone.

Ours is the real path: a seller uploads the recipe with its image to the recipes API, whose
outbox announces it; the media worker (2 render processes, local storage) fetches the original
by its signed URL, renders the variants, stores them and publishes ``recipe.image_ready``, which
the bench hears on its own queue. The ceiling is Pillow alone producing the same variants from
the same bytes in this process, with the same Pillow work as the service (full decode; each
distinct size resized once with LANCZOS, largest first, from a variant already made when that is
at least twice as large; JPEG 800x800 q85 + WebP 200-1600 q80 + the full-size JPEG q90 that
becomes ``original_image``), without validation, colour management, storage or messaging.

Latency: one image at a time, upload → ``recipe.image_ready``. Throughput: N images queued at
once, images/s from the first upload to the last ``image_ready``, against one core of Pillow.
"""

import asyncio
import contextlib
import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import httpx
import numpy as np
from common import (
    HOST,
    Outcome,
    Row,
    Size,
    free_port,
    median,
    process,
    scratch_database,
    scratch_vhost,
    uv_env,
)
from PIL import Image
from recipes_stack import LIST_PATH, RecipesStack, recipes_stack

from contracts import EXCHANGE_NAME

WIDTH, HEIGHT = 4000, 3000
#: Why the throughput goal is not met here (profiled); printed when not met.
THROUGHPUT_LIMIT = (
    "Profiled with 20 queued (CPU per process from /proc, py-spy): per image the 2 render"
    " processes spend ~0.29 s of CPU (the ceiling's own Pillow work) and everything else ~0.1 s"
    " (the upload and the stored original in the recipes API and PostgreSQL, now read in binary"
    " and stored uncompressed; fetch, storage and events in the media worker), all on the same"
    " 2 cores as the 2 render processes: 1.6x one core of Pillow would need the render processes"
    " to have both cores to themselves."
)
RESIZED_BOX = (800, 800)
WEBP_WIDTHS = (200, 400, 800, 1600)


def photo_like_jpeg(seed: int = 7) -> bytes:
    """Smooth gradients and blobs plus sensor-like noise: compresses like a photo (~2-4 MB).

    Built in bands of rows so that the bench process stays small (its children's peak RSS
    is measured, and a forked child starts with its parent's high-water mark).
    """
    rng = np.random.default_rng(seed)
    pixels = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    x = np.arange(WIDTH, dtype=np.float32)[None, :]
    for top in range(0, HEIGHT, 250):
        y = np.arange(top, min(top + 250, HEIGHT), dtype=np.float32)[:, None]
        for channel, phase in enumerate((0.0, 2.1, 4.2)):
            band = 128 + 60 * np.sin(x / 370 + phase) * np.cos(y / 290 - phase)
            band = band + 40 * np.sin((x + y) / 97 + phase)
            band = band + rng.normal(0, 9, band.shape).astype(np.float32)
            pixels[top : top + band.shape[0], :, channel] = np.clip(band, 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def pillow_alone(data: bytes) -> int:
    """The same variants with Pillow and nothing else; returns the bytes produced."""
    image = Image.open(io.BytesIO(data))
    image.load()
    width, height = WIDTH, HEIGHT
    scale = min(1.0, RESIZED_BOX[0] / width, RESIZED_BOX[1] / height)
    jpeg_size = (round(width * scale), round(height * scale))
    webp_sizes = [(w, round(height * w / width)) for w in WEBP_WIDTHS]
    resized: dict[tuple[int, int], Image.Image] = {}
    for size in sorted({jpeg_size, *webp_sizes}, reverse=True):
        larger = [im for im in resized.values() if im.width >= 2 * size[0]]
        source = min(larger, key=lambda im: im.width, default=image)
        resized[size] = source.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    produced = 0
    for n, size in enumerate([jpeg_size, *webp_sizes]):
        buffer = io.BytesIO()
        if n == 0:
            resized[size].save(buffer, "JPEG", quality=85, optimize=True)
        else:
            resized[size].save(buffer, "WEBP", quality=80)
        produced += buffer.tell()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return produced + buffer.tell()


class ReadyListener:
    """Hears ``recipe.image_ready`` / ``image_failed`` on a queue of the bench's own."""

    def __init__(self) -> None:
        self.ready: dict[int, float] = {}
        self.failed: dict[int, str] = {}
        self._changed = asyncio.Event()

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            envelope = json.loads(message.body)
            payload = envelope["payload"]
            if envelope["type"] == "recipe.image_ready":
                self.ready[payload["recipe_id"]] = time.perf_counter()
            else:
                self.failed[payload["recipe_id"]] = payload.get("reason", "")
            self._changed.set()

    @contextlib.asynccontextmanager
    async def listening(self, amqp_url: str) -> AsyncIterator["ReadyListener"]:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                EXCHANGE_NAME, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(exclusive=True)
            for key in ("recipe.image_ready", "recipe.image_failed"):
                await queue.bind(exchange, routing_key=key)
            await queue.consume(self._on_message)
            yield self

    async def wait_for(self, recipe_ids: set[int], *, timeout: float) -> float:
        """Until every recipe in ``recipe_ids`` is ready; the time the last one was."""
        async with asyncio.timeout(timeout):
            while not recipe_ids <= set(self.ready):
                failed = recipe_ids & set(self.failed)
                if failed:
                    raise RuntimeError(f"media failed recipe images: {self.failed}")
                self._changed.clear()
                await self._changed.wait()
        return max(self.ready[r] for r in recipe_ids)


async def upload(client: httpx.AsyncClient, stack: RecipesStack, data: bytes, n: int) -> int:
    headers = stack.tokens.headers(user_id=42, username="seller42", role="seller")
    response = await client.post(
        stack.recipes_url + LIST_PATH,
        headers=headers,
        data={"title": f"Photo recipe {n}", "description": "benchmark"},
        files={"image": (f"photo{n}.jpg", data, "image/jpeg")},
    )
    response.raise_for_status()
    recipe_id: int = response.json()["id"]
    return recipe_id


@contextlib.contextmanager
def media_worker(stack: RecipesStack, directory: Path) -> Iterator[None]:
    with scratch_database("media") as database_url:
        health_port = free_port()
        env = uv_env(
            MEDIA_DATABASE_URL=database_url,
            MEDIA_AMQP_URL=stack.amqp_url,
            MEDIA_RECIPES_INTERNAL_URL=stack.recipes_url,
            MEDIA_DATA_DIR=str(directory),
            MEDIA_HEALTH_PORT=str(health_port),
            MEDIA_LOG_LEVEL="WARNING",
        )
        media = [sys.executable, "-m", "media.main"]
        subprocess.run([*media, "migrate"], env=env, check=True, capture_output=True)
        with process(
            [*media, "worker"],
            env=env,
            ready_url=f"http://{HOST}:{health_port}/readyz",
            name="media",
        ):
            yield


async def measure(stack: RecipesStack, data: bytes, size: Size) -> dict[str, list[float]]:
    queued = 6 if size.quick else 20
    results: dict[str, list[float]] = {"latency": [], "pillow": [], "throughput": [], "core": []}
    async with (
        ReadyListener().listening(stack.amqp_url) as listener,
        httpx.AsyncClient(timeout=60) as client,
    ):
        # Warm-up: the render processes start on the first image.
        await listener.wait_for({await upload(client, stack, data, 0)}, timeout=120)
        for n in range(size.rounds):
            started = time.perf_counter()
            recipe = await upload(client, stack, data, n + 1)
            done = await listener.wait_for({recipe}, timeout=120)
            results["latency"].append((done - started) * 1000)
            started = time.perf_counter()
            pillow_alone(data)
            results["pillow"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        semaphore = asyncio.Semaphore(4)

        async def queue_one(n: int) -> int:
            async with semaphore:
                return await upload(client, stack, data, 100 + n)

        recipes = await asyncio.gather(*(queue_one(n) for n in range(queued)))
        done = await listener.wait_for(set(recipes), timeout=600)
        results["throughput"].append(queued / (done - started))
        started = time.perf_counter()
        for _ in range(queued):
            pillow_alone(data)
        results["core"].append(queued / (time.perf_counter() - started))
    return results


def image(size: Size) -> Outcome:
    outcome = Outcome("image")
    data = photo_like_jpeg()
    with (
        scratch_vhost("image") as amqp_url,
        recipes_stack("image", recipes=0, amqp_url=amqp_url, bare=False) as stack,
        tempfile.TemporaryDirectory(prefix="bench-media-") as tmp,
        media_worker(stack, Path(tmp)),
    ):
        results = asyncio.run(measure(stack, data, size))
    latency, pillow = median(results["latency"]), median(results["pillow"])
    throughput, core = results["throughput"][0], results["core"][0]
    outcome.rows = [
        Row(
            "image",
            "upload → image_ready latency",
            "ms",
            latency,
            pillow,
            "≤ 1.3x ceiling + 100 ms",
            latency <= 1.3 * pillow + 100,
        ),
        Row(
            "image",
            f"images/s, {6 if size.quick else 20} queued",
            "images/s",
            throughput,
            core,
            "≥ 1.6x one core",
            throughput >= 1.6 * core,
            target=1.6,
            note=THROUGHPUT_LIMIT,
        ),
    ]
    outcome.details = {
        "jpeg_bytes": len(data),
        "size": f"{WIDTH}x{HEIGHT}",
        "media_render_processes": 2,
        "ceiling": "Pillow alone in one process, same variants from the same bytes",
    }
    return outcome
