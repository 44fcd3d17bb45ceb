"""Event contracts shared by every service: pure data, no I/O."""

from contracts.envelope import Envelope, UnknownEventError, make_envelope, parse_event
from contracts.events import (
    EVENT_MODELS,
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
    UserDeleted,
    UserRegistered,
    UserRole,
    UserSnapshot,
    UserUpdated,
)
from contracts.routing import EXCHANGE_NAME

__all__ = [
    "EVENT_MODELS",
    "EXCHANGE_NAME",
    "Envelope",
    "Event",
    "ImageReference",
    "ImageVariant",
    "RatingAdded",
    "RatingRemoved",
    "RecipeCreated",
    "RecipeDeleted",
    "RecipeImageFailed",
    "RecipeImageReady",
    "RecipeUpdated",
    "ScheduleTick",
    "UnknownEventError",
    "UserDeleted",
    "UserRegistered",
    "UserRole",
    "UserSnapshot",
    "UserUpdated",
    "make_envelope",
    "parse_event",
]
