"""Where variants go: files under the data directory, or Cloudinary.

Both use the same deterministic path, ``recipes/{recipe_id}/v{image_version}/{variant}``, so a
retried job overwrites what an earlier attempt stored instead of leaving a copy behind, and a
replaced image's assets are found by prefix.
"""

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import cloudinary.api
import cloudinary.exceptions
import cloudinary.uploader

from media.imaging import RenderedVariant

logger = logging.getLogger(__name__)

T = TypeVar("T")


def version_prefix(recipe_id: int, image_version: int) -> str:
    return f"recipes/{recipe_id}/v{image_version}/"


def asset_path(recipe_id: int, image_version: int, variant: str) -> str:
    """The public id of a variant (without extension)."""
    return f"{version_prefix(recipe_id, image_version)}{variant}"


class Storage(Protocol):
    async def store(self, recipe_id: int, image_version: int, variant: RenderedVariant) -> str:
        """Store a variant (replacing any earlier copy); returns its public URL."""
        ...

    async def purge(self, recipe_id: int, image_versions: Sequence[int]) -> None:
        """Delete every asset of these versions of the recipe's image."""
        ...


class LocalStorage:
    """Files under ``root``, which the gateway serves at ``public_base_url``."""

    def __init__(self, root: Path, public_base_url: str) -> None:
        self._root = root
        self._base = public_base_url.rstrip("/") + "/"

    async def store(self, recipe_id: int, image_version: int, variant: RenderedVariant) -> str:
        relative = f"{asset_path(recipe_id, image_version, variant.name)}.{variant.extension}"
        await asyncio.to_thread(self._write, self._root / relative, variant.data)
        return self._base + relative

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: the gateway never serves a half-written file.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    async def purge(self, recipe_id: int, image_versions: Sequence[int]) -> None:
        await asyncio.to_thread(self._remove, recipe_id, image_versions)

    def _remove(self, recipe_id: int, image_versions: Sequence[int]) -> None:
        for version in image_versions:
            shutil.rmtree(self._root / version_prefix(recipe_id, version), ignore_errors=True)
        recipe_dir = self._root / "recipes" / str(recipe_id)
        if recipe_dir.is_dir() and not any(recipe_dir.iterdir()):
            recipe_dir.rmdir()


def is_transient(exc: Exception) -> bool:
    """Timeouts, connection errors, 5xx and rate limits are worth another try; 4xx are not."""
    errors = cloudinary.exceptions
    if isinstance(exc, errors.GeneralError | errors.RateLimited):
        return True
    # The upload API raises the bare Error for timeouts, socket errors and unparsable (e.g. 502)
    # bodies; the admin API raises a bare Exception for statuses it has no class for.
    return type(exc) in (errors.Error, Exception)


class CloudinaryStorage:
    """Signed uploads through the Cloudinary SDK, run in threads since the SDK is synchronous."""

    def __init__(
        self,
        *,
        cloud_name: str,
        api_key: str,
        api_secret: str,
        upload_prefix: str | None,
        timeout: float,
        retry_delays: Sequence[float],
    ) -> None:
        # Passed per call rather than through cloudinary.config(): no global state.
        self._options: dict[str, Any] = {
            "cloud_name": cloud_name,
            "api_key": api_key,
            "api_secret": api_secret,
            "timeout": timeout,
        }
        if upload_prefix:
            self._options["upload_prefix"] = upload_prefix.rstrip("/")
        self._retry_delays = tuple(retry_delays)

    async def store(self, recipe_id: int, image_version: int, variant: RenderedVariant) -> str:
        public_id = asset_path(recipe_id, image_version, variant.name)

        def upload() -> dict[str, Any]:
            result: dict[str, Any] = cloudinary.uploader.upload(
                variant.data,
                public_id=public_id,
                overwrite=True,
                resource_type="image",
                **self._options,
            )
            return result

        result = await self._with_retries(f"upload {public_id}", upload)
        return str(result["secure_url"])

    async def purge(self, recipe_id: int, image_versions: Sequence[int]) -> None:
        for version in image_versions:
            prefix = version_prefix(recipe_id, version)

            def delete(prefix: str = prefix) -> object:
                return cloudinary.api.delete_resources_by_prefix(
                    prefix, resource_type="image", invalidate=True, **self._options
                )

            await self._with_retries(f"delete {prefix}", delete)

    async def _with_retries(self, what: str, call: Callable[[], T]) -> T:
        for delay in (*self._retry_delays, None):
            try:
                return await asyncio.to_thread(call)
            except Exception as exc:
                if delay is None or not is_transient(exc):
                    raise
                logger.warning("cloudinary %s failed (%s); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")
