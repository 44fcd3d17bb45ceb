"""Preferences with the user's token; one-click unsubscribe without one (RFC 8058)."""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from contracts import UserDeleted
from notifier.mail.dispatch import Dispatcher
from notifier.mail.unsubscribe import UnsubscribeTokens
from notifier.main import service
from notifier.models import Preference
from notifier.service.planning import scan_for_digests
from notifier.settings import Settings
from servicekit import SessionMaker
from servicekit.testing import TokenFactory, deliver
from tests.support import MONDAY_SIX, SmtpServer, add_recipe, add_user

pytestmark = pytest.mark.integration

PREFERENCES = "/api/notifications/preferences/"
UNSUBSCRIBE = "/api/notifications/unsubscribe/"


async def test_preferences_default_then_change(
    client: httpx.AsyncClient, token_factory: TokenFactory
) -> None:
    headers = token_factory.headers(user_id=7, username="alice", role="customer")
    response = await client.get(PREFERENCES, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"daily_digest": True, "timezone": "UTC"}

    response = await client.put(PREFERENCES, headers=headers, json={"timezone": "Europe/Berlin"})
    assert response.json() == {"daily_digest": True, "timezone": "Europe/Berlin"}
    response = await client.put(PREFERENCES, headers=headers, json={"daily_digest": False})
    assert response.json() == {"daily_digest": False, "timezone": "Europe/Berlin"}
    assert (await client.get(PREFERENCES, headers=headers)).json() == response.json()
    other = token_factory.headers(user_id=8, username="bob", role="seller")
    assert (await client.get(PREFERENCES, headers=other)).json()["daily_digest"] is True


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "", "europe/berlin"])
async def test_unknown_time_zone_is_refused(
    client: httpx.AsyncClient, token_factory: TokenFactory, zone: str
) -> None:
    headers = token_factory.headers(user_id=7, username="alice", role="customer")
    response = await client.put(PREFERENCES, headers=headers, json={"timezone": zone})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "timezone" in response.json()


async def test_preferences_need_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get(PREFERENCES)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


async def test_one_click_unsubscribe_from_the_mail_header_without_login(
    client: httpx.AsyncClient,
    session_maker: SessionMaker,
    settings: Settings,
    dispatcher: Dispatcher,
    smtp: SmtpServer,
    token_factory: TokenFactory,
) -> None:
    await add_user(session_maker, 1, "alice")
    await add_recipe(session_maker, 10, "Pie", seller_id=9, at=MONDAY_SIX - timedelta(hours=5))
    async with session_maker() as session, session.begin():
        await scan_for_digests(session=session, scan_slot=MONDAY_SIX, settings=settings)
    await dispatcher.send_pending()
    (message,) = smtp.mailbox.messages
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = urlsplit(str(message["List-Unsubscribe"]).strip("<>"))
    assert f"{url.scheme}://{url.netloc}" == "https://recipes.example.test"
    assert url.path == UNSUBSCRIBE

    # What a mail client does (RFC 8058): POST the URL with this body, no cookies, no login.
    response = await client.post(
        f"{url.path}?{url.query}",
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert response.json()["daily_digest"] is False
    headers = token_factory.headers(user_id=1, username="alice", role="customer")
    assert (await client.get(PREFERENCES, headers=headers)).json()["daily_digest"] is False

    await add_recipe(session_maker, 11, "Tart", seller_id=9, at=MONDAY_SIX + timedelta(hours=5))
    async with session_maker() as session, session.begin():
        planned = await scan_for_digests(
            session=session, scan_slot=MONDAY_SIX + timedelta(days=1), settings=settings
        )
    assert planned == 0
    assert parse_qs(url.query)["token"]  # the token travelled in the URL


async def test_token_as_form_field(client: httpx.AsyncClient, settings: Settings) -> None:
    token = UnsubscribeTokens(settings.unsubscribe_key).issue(5)
    response = await client.post(UNSUBSCRIBE, data={"token": token})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-token",
        UnsubscribeTokens("another-secret").issue(1),
        UnsubscribeTokens("test-unsubscribe-secret").issue(1)[:-2] + "xx",
    ],
)
async def test_forged_token_is_refused(client: httpx.AsyncClient, token: str) -> None:
    response = await client.post(UNSUBSCRIBE, params={"token": token})
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid unsubscribe token.", "code": "invalid_token"}


async def test_openapi_is_served_under_the_service_prefix(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/notifications/openapi.json")
    assert response.status_code == 200
    assert PREFERENCES in response.json()["paths"]


async def test_a_deleted_users_token_is_refused_and_their_preferences_go(
    client: httpx.AsyncClient,
    token_factory: TokenFactory,
    session_maker: SessionMaker,
    settings: Settings,
) -> None:
    """Issue 16 row 3: the notifier accepted any unexpired token of a deleted user."""
    headers = token_factory.headers(user_id=7, username="alice", role="customer")
    await client.put(PREFERENCES, headers=headers, json={"timezone": "Europe/Berlin"})
    deleted = UserDeleted(user_id=7, username="alice", version=2, deleted_at=MONDAY_SIX)
    assert await deliver(service.consumer(settings, session_maker), deleted)
    for answer in (
        await client.get(PREFERENCES, headers=headers),
        await client.put(PREFERENCES, headers=headers, json={"daily_digest": True}),
    ):
        assert answer.status_code == 401
        assert answer.json()["code"] == "user_inactive"
    async with session_maker() as session:
        assert await session.get(Preference, 7) is None


async def test_a_deleted_users_unsubscribe_link_writes_nothing(
    client: httpx.AsyncClient, session_maker: SessionMaker, settings: Settings
) -> None:
    """The link never expires: it kept creating a preferences row for a user already deleted."""
    deleted = UserDeleted(user_id=7, username="alice", version=2, deleted_at=MONDAY_SIX)
    assert await deliver(service.consumer(settings, session_maker), deleted)
    token = UnsubscribeTokens(settings.unsubscribe_key).issue(7)
    response = await client.post(UNSUBSCRIBE, params={"token": token})
    assert response.status_code == 200
    assert response.json()["daily_digest"] is False
    async with session_maker() as session:
        assert await session.get(Preference, 7) is None
