"""Request and response bodies of the notifications API."""

from pydantic import BaseModel, ConfigDict, field_validator

from notifier.zones import is_known_zone


class PreferencesOut(BaseModel):
    daily_digest: bool
    #: The zone the digest follows (the platform default when the user chose none).
    timezone: str


class PreferencesIn(BaseModel):
    """Fields left out stay as they are; ``timezone: null`` returns to the default zone."""

    model_config = ConfigDict(extra="forbid")

    daily_digest: bool | None = None
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and not is_known_zone(value):
            raise ValueError(f"Unknown time zone {value!r}: use an IANA name like Europe/Berlin.")
        return value


class UnsubscribeOut(BaseModel):
    detail: str
    daily_digest: bool
