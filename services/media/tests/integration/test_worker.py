"""Issue 5's acceptance, through a real broker and database and a stand-in Cloudinary."""

import io
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from contracts import RecipeDeleted, RecipeImageFailed, RecipeImageReady, RecipeUpdated
from media.fetch import UNAVAILABLE
from media.main import service
from media.models import JobStatus
from servicekit import dead_letters
from servicekit.testing import eventually, metric_value

from ..cloudinary_standin import CloudinaryStandIn
from ..corpus import encode, hostile_corpus, noisy
from ..originals import CREDENTIAL
from .conftest import StartWorker
from .harness import recipe_created

pytestmark = pytest.mark.integration


def jobs_total(outcome: str) -> float:
    return metric_value("media_image_jobs_total", outcome=outcome)


def cloudinary_settings(standin: CloudinaryStandIn) -> dict[str, object]:
    return {
        "storage": "cloudinary",
        "cloudinary_cloud_name": standin.cloud_name,
        "cloudinary_api_key": standin.api_key,
        "cloudinary_api_secret": standin.api_secret,
        "cloudinary_upload_prefix": standin.url,
    }


async def test_cloudinary_secure_url_reaches_image_ready(
    start_worker: StartWorker, cloudinary_standin: CloudinaryStandIn
) -> None:
    ready_before = jobs_total("ready")
    worker = await start_worker(**cloudinary_settings(cloudinary_standin))
    original = encode(noisy((1200, 900)), "JPEG", quality=85)
    await worker.send(recipe_created(41, worker.originals.add(41, 1, original)))
    await worker.wait_for_results(1)

    [envelope] = worker.results
    ready = RecipeImageReady.model_validate(envelope.payload)
    assert (envelope.type, ready.recipe_id, ready.image_version) == ("recipe.image_ready", 41, 1)
    assert cloudinary_standin.rejected == []
    uploads = {u.public_id: u for u in cloudinary_standin.uploads}
    assert sorted(uploads) == [
        f"recipes/41/v1/{name}" for name in ("original", "resized", "w200", "w400", "w800")
    ]
    assert ready.resized_image_url.startswith("https://res.cloudinary.test/")
    assert ready.resized_image_url.endswith("/recipes/41/v1/resized.jpg")
    for variant in ready.variants:
        upload = uploads[f"recipes/41/v1/{variant.name}"]
        assert variant.url.endswith(
            f"/{upload.public_id}.{'jpg' if variant.format == 'jpeg' else 'webp'}"
        )
        assert variant.bytes == len(upload.data)
        assert Image.open(io.BytesIO(upload.data)).size == (variant.width, variant.height)
    resized = next(v for v in ready.variants if v.name == "resized")
    assert (resized.width, resized.height, resized.format) == (800, 600, "jpeg")

    job = await worker.job(41, 1)
    assert (job.status, job.attempts, job.error) == (JobStatus.READY, 1, None)
    assert job.result is not None and job.result["resized_image_url"] == ready.resized_image_url
    assert jobs_total("ready") == ready_before + 1


async def test_same_image_event_twice_uploads_once_and_publishes_once(
    start_worker: StartWorker, cloudinary_standin: CloudinaryStandIn
) -> None:
    worker = await start_worker(**cloudinary_settings(cloudinary_standin))
    redelivered = {"queue": service.queue, "event_type": "recipe.created", "outcome": "duplicate"}
    inbox_duplicates_before = metric_value("events_consumed_total", **redelivered)
    job_duplicates_before = jobs_total("duplicate")
    event = recipe_created(42, worker.originals.add(42, 1, encode(noisy((500, 400)), "PNG")))
    [envelope] = await worker.send(event)
    # The same envelope redelivered, and the same change announced again under a new id.
    await worker.send(envelope, event)

    async def both_duplicates_handled() -> bool:
        return (
            metric_value("events_consumed_total", **redelivered) > inbox_duplicates_before
            and jobs_total("duplicate") > job_duplicates_before
        )

    await eventually(both_duplicates_handled)
    # Everything the duplicates might have published is in the outbox by now; a later image
    # result arriving proves the relay has passed them.
    await worker.send(recipe_created(43, worker.originals.add(43, 1, b"not an image")))

    async def sentinel_arrived() -> bool:
        return bool(worker.results_for(43))

    await eventually(sentinel_arrived)
    assert [e.type for e in worker.results_for(42)] == ["recipe.image_ready"]
    assert [u.public_id for u in cloudinary_standin.uploads].count("recipes/42/v1/resized") == 1
    assert len(cloudinary_standin.uploads) == 4  # resized, w200, w400, original
    assert (await worker.job(42, 1)).attempts == 1


async def test_hostile_corpus_gives_ready_or_failed_never_a_stuck_worker(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    worker = await start_worker(data_dir=str(tmp_path))
    corpus = hostile_corpus()
    content_types = {}
    for recipe_id, sample in enumerate(corpus, start=100):
        reference = worker.originals.add(
            recipe_id, 1, sample.data, content_type=sample.content_type
        )
        content_types[recipe_id] = sample
        await worker.send(recipe_created(recipe_id, reference))
    await worker.wait_for_results(len(corpus))

    for recipe_id, sample in content_types.items():
        [envelope] = worker.results_for(recipe_id)
        job = await worker.job(recipe_id, 1)
        if sample.expected == "failed":
            failed = RecipeImageFailed.model_validate(envelope.payload)
            assert envelope.type == "recipe.image_failed", sample.name
            assert failed.reason and job.status == JobStatus.FAILED and job.error
        else:
            ready = RecipeImageReady.model_validate(envelope.payload)
            assert envelope.type == "recipe.image_ready", sample.name
            assert job.status == JobStatus.READY
            for variant in ready.variants:
                relative = variant.url.removeprefix(worker.settings.public_base_url)
                with Image.open(tmp_path / relative) as stored:
                    assert stored.size == (variant.width, variant.height)
                    assert not stored.getexif(), sample.name
    by_name = {s.name: worker.results_for(rid)[0] for rid, s in content_types.items()}
    rotated = RecipeImageReady.model_validate(by_name["exif-rotated-jpeg"].payload)
    assert {(v.width, v.height) for v in rotated.variants} == {(200, 400)}
    assert "megapixels" in by_name["png-30000x30000"].payload["reason"]


async def test_newer_image_purges_the_older_and_deletion_purges_all(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    worker = await start_worker(data_dir=str(tmp_path))
    first = worker.originals.add(44, 1, encode(noisy((300, 200)), "JPEG"))
    await worker.send(recipe_created(44, first))
    await worker.wait_for_results(1)
    assert (tmp_path / "recipes/44/v1/resized.jpg").is_file()

    second = worker.originals.add(44, 2, encode(noisy((320, 240)), "JPEG"))
    update = recipe_created(44, second).model_dump()
    await worker.send(RecipeUpdated.model_validate(update))
    await worker.wait_for_results(2)
    assert worker.results[1].payload["image_version"] == 2
    assert not (tmp_path / "recipes/44/v1").exists()
    assert (tmp_path / "recipes/44/v2/resized.jpg").is_file()
    assert (await worker.job(44, 1)).status == JobStatus.PURGED

    # A late retry of the replaced image changes nothing.
    duplicates_before = jobs_total("duplicate")
    await worker.send(recipe_created(44, first))
    await worker.send(RecipeDeleted(recipe_id=44, seller_id=1, deleted_at=second.expires_at))

    async def purged() -> bool:
        status = await worker.job_status(44, 2)
        return status == JobStatus.PURGED and jobs_total("duplicate") > duplicates_before

    await eventually(purged)
    assert not (tmp_path / "recipes/44").exists()
    assert len(worker.results) == 2


async def test_unavailable_recipes_service_retries_then_dead_letters(
    start_worker: StartWorker, amqp_url: str
) -> None:
    worker = await start_worker()
    reference = worker.originals.add(45, 1, encode(noisy((100, 100)), "PNG"))
    worker.originals.statuses["/internal/images/45/1"] = 503
    await worker.send(recipe_created(45, reference))

    async def parked() -> bool:
        return await dead_letters.count(amqp_url, service.queue) == 1

    await eventually(parked)
    job = await worker.job(45, 1)
    assert job.status == JobStatus.PROCESSING
    assert job.attempts == 3 and job.error is not None and "503" in job.error
    assert worker.originals.requests.count("/internal/images/45/1") == 3
    assert worker.results == []


#: A message older than its link: a dead letter replayed days later.
THREE_DAYS_AGO = timedelta(days=-3)


async def test_a_replay_days_later_still_gets_its_original(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    worker = await start_worker(recipes_credential=CREDENTIAL, data_dir=str(tmp_path))
    original = encode(noisy((640, 480)), "JPEG", quality=85)
    reference = worker.originals.add(51, 1, original, expires_in=THREE_DAYS_AGO)
    await worker.send(recipe_created(51, reference))
    await worker.wait_for_results(1)
    assert [e.type for e in worker.results] == ["recipe.image_ready"]
    assert (await worker.job(51, 1)).status == JobStatus.READY


async def test_without_the_credential_an_expired_link_fails_the_image(
    start_worker: StartWorker,
) -> None:
    worker = await start_worker()
    original = encode(noisy((640, 480)), "JPEG", quality=85)
    reference = worker.originals.add(52, 1, original, expires_in=THREE_DAYS_AGO)
    await worker.send(recipe_created(52, reference))
    await worker.wait_for_results(1)
    [failed] = worker.results
    assert failed.type == "recipe.image_failed"
    assert RecipeImageFailed.model_validate(failed.payload).reason == UNAVAILABLE
    assert worker.originals.requests == []


async def test_event_without_image_is_ignored(start_worker: StartWorker) -> None:
    worker = await start_worker()
    handled = {"queue": service.queue, "event_type": "recipe.created", "outcome": "handled"}
    before = metric_value("events_consumed_total", **handled)
    await worker.send(recipe_created(46, None))

    async def consumed() -> bool:
        return bool(metric_value("events_consumed_total", **handled) > before)

    await eventually(consumed)
    assert worker.originals.requests == []
    assert await worker.outbox_size() == 0


async def test_older_image_arriving_after_a_newer_one_is_superseded(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    worker = await start_worker(data_dir=str(tmp_path))
    older = worker.originals.add(47, 1, encode(noisy((300, 200)), "JPEG"))
    newer = worker.originals.add(47, 2, encode(noisy((300, 200)), "PNG"))
    await worker.send(recipe_created(47, newer))
    await worker.wait_for_results(1)
    await worker.send(recipe_created(47, older))

    async def superseded() -> bool:
        status = await worker.job_status(47, 1)
        return bool(status == JobStatus.SUPERSEDED)

    await eventually(superseded)
    assert "/internal/images/47/1" not in worker.originals.requests
    assert sorted(p.name for p in (tmp_path / "recipes/47").iterdir()) == ["v2"]
    assert [e.payload["image_version"] for e in worker.results] == [2]
