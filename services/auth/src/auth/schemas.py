"""Request and response bodies of the auth API (the original backend's field names)."""

from pydantic import BaseModel, ConfigDict


class _Request(BaseModel):
    # Unknown fields are ignored, as the original backend's serializers did.
    model_config = ConfigDict(extra="ignore")


class RegisterRequest(_Request):
    username: str
    password: str
    #: Optional, as in the original: a user without an address receives no mail until they add one.
    email: str | None = None
    role: str = "customer"


class UserOut(BaseModel):
    id: int
    username: str
    email: str
    role: str


class TokenRequest(_Request):
    username: str
    password: str


class RefreshRequest(_Request):
    refresh: str


class TokenPair(BaseModel):
    access: str
    refresh: str


class UpdateMeRequest(_Request):
    email: str | None = None
    password: str | None = None
    #: Required with ``password``: a stolen access token alone cannot take over the account.
    current_password: str | None = None
