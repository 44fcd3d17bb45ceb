"""Every event round-trips, and its JSON Schema matches the committed snapshot.

A failing snapshot means a contract changed. If the change is compatible (a new optional field),
regenerate the snapshots with ``UPDATE_CONTRACT_SNAPSHOTS=1 pytest``; if it is not, add a new
version of the event instead of editing this one.
"""

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts import (
    EVENT_MODELS,
    Envelope,
    Event,
    ImageReference,
    ImageVariant,
    RatingAdded,
    RatingRemoved,
    RecipeCreated,
    RecipeDeleted,
    RecipeImageFailed,
    RecipeImageReady,
    RecipeUpdated,
    ScheduleTick,
    UnknownEventError,
    UserDeleted,
    UserRegistered,
    UserRegisteredV1,
    UserRole,
    UserUpdated,
    UserUpdatedV1,
    make_envelope,
    parse_event,
)

SNAPSHOTS = Path(__file__).parent / "schemas"
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)

USER = {
    "user_id": 1,
    "username": "ann",
    "email": "ann@example.com",
    "role": UserRole.SELLER,
    "date_joined": NOW,
    "updated_at": NOW,
    "version": 1,
}
REFERENCE = ImageReference(
    image_version=2,
    url="http://recipes:8002/internal/images/5/2?expires=1&signature=ab",
    sha256="0" * 64,
    size=1234,
    content_type="image/jpeg",
    expires_at=NOW + timedelta(days=1),
)
RECIPE = {
    "recipe_id": 5,
    "seller_id": 1,
    "seller_username": "ann",
    "title": "Soup",
    "description": "Hot",
    "created_at": NOW,
    "updated_at": NOW,
    "image": REFERENCE,
}

EXAMPLES: list[Event] = [
    UserRegisteredV1(**USER),
    UserUpdatedV1(**USER),
    UserRegistered(**{**USER, "email": None}),
    UserUpdated(**USER),
    UserDeleted(user_id=1, username="ann", version=2, deleted_at=NOW),
    RecipeCreated(**RECIPE),
    RecipeUpdated(**{**RECIPE, "image": None}),
    RecipeDeleted(recipe_id=5, seller_id=1, deleted_at=NOW),
    RatingAdded(
        rating_id=9,
        recipe_id=5,
        recipe_title="Soup",
        seller_id=1,
        user_id=2,
        username="bob",
        score=4,
        previous_score=None,
        avg_rating=4.0,
        rating_count=1,
        rated_at=NOW,
    ),
    RatingRemoved(
        rating_id=9,
        recipe_id=5,
        user_id=2,
        score=4,
        avg_rating=0.0,
        rating_count=0,
        removed_at=NOW,
    ),
    RecipeImageReady(
        recipe_id=5,
        image_version=2,
        resized_image_url="https://cdn/x.jpg",
        variants=(
            ImageVariant(
                name="w400", url="https://cdn/x.webp", width=400, height=300, format="webp", bytes=9
            ),
        ),
    ),
    RecipeImageFailed(recipe_id=5, image_version=2, reason="not an image"),
    ScheduleTick(job="daily-digest", slot=NOW, cron="0 6 * * 1-5"),
]


def test_every_event_has_an_example() -> None:
    assert {(type(e).event_type, type(e).event_version) for e in EXAMPLES} == set(EVENT_MODELS)


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).event_type)
def test_round_trip_through_the_envelope(event: Event) -> None:
    envelope = make_envelope(event, producer="tests", correlation_id="req-1")
    wire = envelope.model_dump_json()
    decoded = Envelope.model_validate_json(wire)
    assert decoded == envelope
    assert decoded.routing_key == type(event).event_type
    assert parse_event(decoded) == event


MODELS = sorted(EVENT_MODELS.values(), key=lambda model: model.event_type)


@pytest.mark.parametrize("model", MODELS)
def test_json_schema_matches_snapshot(model: type[Event]) -> None:
    path = SNAPSHOTS / f"{model.event_type}.v{model.event_version}.json"
    schema = model.model_json_schema()
    if os.environ.get("UPDATE_CONTRACT_SNAPSHOTS") == "1":
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    assert path.exists(), (
        f"no snapshot for {model.event_type}: run with UPDATE_CONTRACT_SNAPSHOTS=1"
    )
    assert schema == json.loads(path.read_text()), (
        f"{model.event_type} v{model.event_version} changed: add a new version instead"
    )


def test_a_breaking_change_fails_the_snapshot(tmp_path: Path) -> None:
    """The snapshot check is able to fail: retyping a field changes the schema."""

    class RecipeDeletedRetyped(Event):
        recipe_id: str
        seller_id: int
        deleted_at: datetime

    snapshot = json.loads((SNAPSHOTS / "recipe.deleted.v1.json").read_text())
    assert RecipeDeletedRetyped.model_json_schema() != snapshot


def test_unknown_version_is_refused() -> None:
    envelope = make_envelope(EXAMPLES[0], producer="tests").model_copy(update={"version": 99})
    with pytest.raises(UnknownEventError):
        parse_event(envelope)


def test_invalid_payload_is_refused() -> None:
    envelope = make_envelope(EXAMPLES[5], producer="tests")
    broken = envelope.model_copy(update={"payload": {"recipe_id": "x"}})
    with pytest.raises(ValidationError):
        parse_event(broken)


def test_events_are_frozen() -> None:
    with pytest.raises(ValidationError):
        EXAMPLES[5].recipe_id = 3  # type: ignore[attr-defined]


def test_deterministic_event_id_is_kept() -> None:
    event_id = uuid.uuid4()
    assert make_envelope(EXAMPLES[-1], producer="t", event_id=event_id).event_id == event_id


def test_version_1_user_events_still_parse_as_their_type() -> None:
    """A v1 ``user.*`` queued before the change reaches the same handler, email required."""
    v1 = make_envelope(UserUpdatedV1(**USER), producer="tests")
    assert v1.version == 1
    parsed = parse_event(v1)
    assert isinstance(parsed, UserUpdated)
    assert parsed.email == "ann@example.com"
    with pytest.raises(ValidationError):
        parse_event(v1.model_copy(update={"payload": {**v1.payload, "email": None}}))


def test_version_2_user_events_may_lack_an_email() -> None:
    envelope = make_envelope(UserRegistered(**{**USER, "email": None}), producer="tests")
    assert envelope.version == 2
    assert parse_event(envelope) == UserRegistered(**{**USER, "email": None})


def test_user_events_never_carry_a_password() -> None:
    for model in (UserRegistered, UserUpdated, UserDeleted):
        assert not any("password" in name for name in model.model_fields)
