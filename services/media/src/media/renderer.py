"""Running the CPU work in worker processes, off the event loop and on every core.

Processes are spawned (not forked) so they never inherit the event loop, sockets or locks of
the worker. ``start`` spawns and warms every one of them before the first image: the executor
would otherwise spawn them one at a time as images overlap, and each spawn (a Python start,
Pillow's codecs) would land in the latency of a burst's first images.

A process that dies (killed for memory, a crash in a codec) breaks the pool: the pool is
replaced and the job raises, so the event is retried and, if the image keeps killing processes,
dead-lettered.
"""

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial

from media.imaging import RenderedImage, configure_pillow, render_variants, warm_up

#: What runs in a worker process; a module-level function, since it is pickled by name.
RenderFunction = Callable[..., RenderedImage]

logger = logging.getLogger(__name__)


class RendererCrashed(RuntimeError):
    """A worker process died while rendering; transient from the job's point of view."""


class RenderTimedOut(RuntimeError):
    """Rendering took longer than allowed; the processes were killed. Transient: under load a
    legitimate image can be slow too, so the event is retried and then dead-lettered rather
    than failed for the seller."""


class Renderer:
    def __init__(
        self,
        *,
        workers: int,
        max_pixels: int,
        timeout: float = 120.0,
        render: RenderFunction = render_variants,
    ) -> None:
        self._workers = workers
        self._timeout = timeout
        self._max_pixels = max_pixels
        self._render = render
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=configure_pillow,
                initargs=(self._max_pixels,),
            )
        return self._pool

    async def start(self) -> None:
        """Spawn every worker process now and have each load its codecs."""
        pool = self._executor()
        loop = asyncio.get_running_loop()
        # The executor spawns a process for each job submitted while none is idle, so one job
        # per worker submitted at once starts them all.
        async with asyncio.timeout(self._timeout):
            await asyncio.gather(
                *(loop.run_in_executor(pool, warm_up) for _ in range(self._workers))
            )

    @property
    def processes(self) -> int:
        """Worker processes alive (none before ``start`` or the first image)."""
        if self._pool is None:
            return 0
        return sum(process.is_alive() for process in self._pool._processes.values())

    async def render(self, data: bytes) -> RenderedImage:
        """Validate and render in a worker process; raises ImageRejected or RendererCrashed."""
        pool = self._executor()
        job = partial(self._render, data, max_pixels=self._max_pixels)
        try:
            async with asyncio.timeout(self._timeout):
                return await asyncio.get_running_loop().run_in_executor(pool, job)
        except BrokenProcessPool as exc:
            logger.error("an image worker process died; replacing the pool")
            self._discard(pool)
            raise RendererCrashed("image worker process died") from exc
        except TimeoutError as exc:
            logger.error(
                "rendering took over %.0fs; killing the image worker processes", self._timeout
            )
            self._discard(pool, kill=True)
            raise RenderTimedOut(f"rendering took over {self._timeout:.0f}s") from exc

    def _discard(self, pool: ProcessPoolExecutor, *, kill: bool = False) -> None:
        """Stop using ``pool``; other jobs still in it fail with BrokenProcessPool and retry."""
        if self._pool is not pool:
            return  # another job already replaced it
        self._pool = None
        if kill:
            # The executor cannot cancel a running task: killing its processes is the only way
            # to get the CPU back from a file built to be slow.
            for process in list(pool._processes.values()):
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
