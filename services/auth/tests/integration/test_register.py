import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from servicekit import OutboxMessage, SessionMaker
from tests.helpers import STRONG_PASSWORD, register

pytestmark = pytest.mark.integration

URL = "/api/auth/register/"


async def test_register_returns_the_account(client: httpx.AsyncClient) -> None:
    response = await client.post(
        URL,
        json={
            "username": "chef.ann",
            "email": "Ann@Example.COM",
            "password": STRONG_PASSWORD,
            "role": "seller",
            "is_staff": True,  # unknown fields are ignored
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body == {
        "id": body["id"],
        "username": "chef.ann",
        "email": "Ann@example.com",
        "role": "seller",
    }
    assert isinstance(body["id"], int)


async def test_role_defaults_to_customer_and_works_without_trailing_slash(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        URL.rstrip("/"),
        json={"username": "bob", "email": "bob@example.com", "password": STRONG_PASSWORD},
    )
    assert response.status_code == 201
    assert response.json()["role"] == "customer"


async def test_missing_fields_use_the_field_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json={"username": "x"})
    assert response.status_code == 400
    assert response.json() == {"password": ["This field is required."]}


@pytest.mark.parametrize("email", [None, ""], ids=["absent", "blank"])
async def test_email_is_optional_as_in_the_original(
    client: httpx.AsyncClient, app: FastAPI, email: str | None
) -> None:
    payload = {"username": "noaddr", "password": STRONG_PASSWORD}
    if email is not None:
        payload["email"] = email
    first = await client.post(URL, json=payload)
    # Two users without an address do not collide on the unique address index.
    second = await client.post(URL, json={**payload, "username": "noaddr2"})
    assert (first.status_code, second.status_code) == (201, 201), first.text
    assert first.json()["email"] == ""
    maker: SessionMaker = app.state.session_maker
    async with maker() as session:
        rows = (await session.execute(select(OutboxMessage.envelope))).scalars().all()  # type: ignore[call-overload]
    registered = [row for row in rows if row["type"] == "user.registered"]
    assert [(row["version"], row["payload"]["email"]) for row in registered] == [(2, None)] * 2


async def test_a_form_encoded_registration_is_accepted(client: httpx.AsyncClient) -> None:
    form = {"username": "formuser", "password": STRONG_PASSWORD, "email": "f@example.com"}
    encoded = await client.post(URL, data=form)
    multipart = await client.post(
        URL, data={**form, "username": "formuser2", "email": ""}, files={"x": b""}
    )
    assert encoded.status_code == 201, encoded.text
    assert encoded.json()["email"] == "f@example.com"
    assert multipart.status_code == 201, multipart.text
    missing = await client.post(URL, data={"username": "y"})
    assert missing.json() == {"password": ["This field is required."]}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("role", "admin", '"admin" is not a valid choice.'),
        ("email", "not-an-email", "Enter a valid email address."),
        # Not mailable without SMTPUTF8, which the notifier does not use (issue 16 row 9).
        ("email", "łukasz@example.com", "Enter a valid email address."),
        ("username", "has space", "Enter a valid username."),
        ("username", "a" * 151, "Ensure this field has no more than 150 characters."),
        ("username", "", "This field may not be blank."),
        ("password", "short1!", "This password is too short."),
        ("password", "1234567890987", "This password is entirely numeric."),
        ("password", "password123", "This password is too common."),
        ("password", "gordon.ramsay1", "The password is too similar to the username."),
    ],
)
async def test_invalid_input_is_rejected_per_field(
    client: httpx.AsyncClient, field: str, value: str, message: str
) -> None:
    payload = {
        "username": "gordon.ramsay",
        "email": "gordon@example.com",
        "password": STRONG_PASSWORD,
        "role": "customer",
        field: value,
    }
    response = await client.post(URL, json=payload)
    assert response.status_code == 400
    body = response.json()
    assert list(body) == [field]
    assert any(msg.startswith(message) for msg in body[field]), body


async def test_an_internationalised_domain_is_stored_in_its_mailable_ascii_form(
    client: httpx.AsyncClient,
) -> None:
    """Issue 16 row 9: the notifier could never mail ``lukasz@exämple.com`` as given."""
    created = await register(client, "lukasz", email="lukasz@exämple.com")
    assert created["email"] == "lukasz@xn--exmple-cua.com"
    again = await client.post(
        URL,
        json={
            "username": "other",
            "email": "LUKASZ@xn--exmple-cua.com",
            "password": STRONG_PASSWORD,
        },
    )
    assert again.json() == {"email": ["A user with that email already exists."]}


async def test_username_and_email_are_unique_without_regard_to_case(
    client: httpx.AsyncClient,
) -> None:
    await register(client, "alice", email="alice@example.com")
    response = await client.post(
        URL,
        json={"username": "ALICE", "email": "ALICE@example.com", "password": STRONG_PASSWORD},
    )
    assert response.status_code == 400
    assert response.json() == {
        "username": ["A user with that username already exists."],
        "email": ["A user with that email already exists."],
    }


async def test_a_body_that_is_not_an_object_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        URL, content=b"[1, 2]", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


async def test_malformed_json_is_a_parse_error(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, content=b"{bad", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["detail"] == "JSON parse error"
