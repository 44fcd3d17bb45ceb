import os

import pytest

from media.errors import ImageRejected
from media.imaging import RenderedImage
from media.renderer import Renderer, RendererCrashed, RenderTimedOut

from ..corpus import gps_jpeg


def die_on_first_byte_x(data: bytes, *, max_pixels: int) -> RenderedImage:
    """Stands in for a codec that kills its process on a hostile file."""
    if data.startswith(b"x"):
        os._exit(1)
    from media.imaging import render_variants

    return render_variants(data, max_pixels=max_pixels)


async def test_renders_in_worker_processes() -> None:
    renderer = Renderer(workers=2, max_pixels=10**6)
    try:
        rendered = await renderer.render(gps_jpeg())
        assert [v.name for v in rendered.variants] == ["resized", "w200", "original"]
        with pytest.raises(ImageRejected, match="empty"):
            await renderer.render(b"")
    finally:
        renderer.close()


async def test_start_spawns_every_worker_process_before_the_first_image() -> None:
    renderer = Renderer(workers=2, max_pixels=10**6)
    try:
        assert renderer.processes == 0
        await renderer.start()
        assert renderer.processes == 2
        rendered = await renderer.render(gps_jpeg())
        assert rendered.source_width == 320
        assert renderer.processes == 2
    finally:
        renderer.close()
    assert renderer.processes == 0


async def test_a_dead_worker_process_is_transient_and_the_pool_recovers() -> None:
    renderer = Renderer(workers=1, max_pixels=10**6, render=die_on_first_byte_x)
    try:
        with pytest.raises(RendererCrashed):
            await renderer.render(b"x marks a process-killing file")
        rendered = await renderer.render(gps_jpeg())
        assert rendered.source_width == 320
    finally:
        renderer.close()


def sleep_on_first_byte_z(data: bytes, *, max_pixels: int) -> RenderedImage:
    """Stands in for a file crafted to take forever to decode."""
    if data.startswith(b"z"):
        import time

        time.sleep(600)
    from media.imaging import render_variants

    return render_variants(data, max_pixels=max_pixels)


async def test_a_render_that_takes_too_long_is_killed_and_the_pool_recovers() -> None:
    renderer = Renderer(workers=1, max_pixels=10**6, timeout=5.0, render=sleep_on_first_byte_z)
    try:
        with pytest.raises(RenderTimedOut):
            await renderer.render(b"z" * 10)
        rendered = await renderer.render(gps_jpeg())
        assert rendered.source_width == 320
    finally:
        renderer.close()
