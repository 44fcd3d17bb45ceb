"""Composing mail: multipart/alternative, escaped HTML, headers no user text can break."""

from datetime import date
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
from markupsafe import escape

from notifier.mail.compose import InvalidAddress, MailComposer, MailRecipient, display_name
from notifier.mail.content import DigestContent, NewRecipe, ReceivedRating, TopRecipe
from notifier.mail.mime import OutgoingMail
from notifier.mail.unsubscribe import UnsubscribeTokens

TOKENS = UnsubscribeTokens("unit-secret")
COMPOSER = MailComposer(
    sender="Recipes <digest@recipes.example>",
    public_base_url="https://recipes.example/",
    tokens=TOKENS,
)
CONTENT = DigestContent(
    new_recipes=(NewRecipe(1, "Pie & <b>Mash</b>", 9, "chef"),),
    best_rated=(TopRecipe(1, "Pie & <b>Mash</b>", 4.5, 2),),
    received_ratings=(ReceivedRating(3, "Soup", "<i>critic</i>", 4),),
)


def reparsed(mail: OutgoingMail) -> EmailMessage:
    parsed = message_from_bytes(mail.data, policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_digest_is_multipart_alternative_with_one_click_unsubscribe() -> None:
    to = MailRecipient(42, "alice", "alice@example.test", "seller")
    message = reparsed(COMPOSER.digest(to=to, digest_date=date(2026, 11, 23), content=CONTENT))

    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["Message-ID"] == "<digest.42.2026-11-23@recipes.example>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = str(message["List-Unsubscribe"])
    assert url.startswith("<https://recipes.example/api/notifications/unsubscribe/?token=")
    token = url.removesuffix(">").split("token=", 1)[1]
    assert TOKENS.user_id(token) == 42


def test_html_is_escaped_and_text_is_plain() -> None:
    to = MailRecipient(1, "<b>bold</b>", "a@example.test", "seller")
    message = reparsed(COMPOSER.digest(to=to, digest_date=date(2026, 11, 23), content=CONTENT))
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    html_content = html.get_content()
    assert "<b>" not in html_content and "<i>" not in html_content
    assert "Pie &amp; &lt;b&gt;Mash&lt;/b&gt;" in html_content
    assert "&lt;i&gt;critic&lt;/i&gt; gave" in html_content
    assert "- Pie & <b>Mash</b> (by chef)" in text.get_content()


def test_header_injection_through_the_username_is_impossible() -> None:
    to = MailRecipient(1, "Eve\r\nBcc: victim@example.test\n\nbody", "eve@example.test", "customer")
    message = reparsed(COMPOSER.welcome(to=to))
    assert message["Bcc"] is None
    assert message["To"].addresses[0].addr_spec == "eve@example.test"
    assert message["To"].addresses[0].display_name == "Eve Bcc: victim@example.test body"


def test_unsubscribe_header_is_the_plain_url_on_one_line() -> None:
    to = MailRecipient(42, "alice", "alice@example.test", "customer")
    mail = COMPOSER.digest(to=to, digest_date=date(2026, 11, 23), content=CONTENT)
    (line,) = [x for x in mail.data.split(b"\r\n") if x.startswith(b"List-Unsubscribe:")]
    url = COMPOSER.unsubscribe_url(42).encode()
    assert line == b"List-Unsubscribe: <" + url + b">"


def test_users_sharing_a_digest_each_get_their_own_greeting() -> None:
    names = ["alice", "Zoë <b>&</b>", "bob"]
    mails = [
        reparsed(
            COMPOSER.digest(
                to=MailRecipient(n, name, f"u{n}@example.test", "customer"),
                digest_date=date(2026, 11, 23),
                content=CONTENT,
            )
        )
        for n, name in enumerate(names)
    ]
    for name, message in zip(names, mails, strict=True):
        text, html = (str(part.get_content()) for part in message.iter_parts())
        assert f"Good morning, {name}!" in text
        assert "Pie & <b>Mash</b> (by chef)" in text
        assert f"Good morning, {escape(name)}!" in html
        assert str(message["Subject"]) == "Your recipe digest for Monday 23 November"
    assert [m["To"].addresses[0].addr_spec for m in mails] == [
        "u0@example.test",
        "u1@example.test",
        "u2@example.test",
    ]


def test_envelope_is_the_senders_and_the_recipients_address() -> None:
    mail = COMPOSER.welcome(to=MailRecipient(5, "eve", "eve@example.test", "customer"))
    assert (mail.sender, mail.recipient) == ("digest@recipes.example", "eve@example.test")
    assert mail.message_id == "<welcome.5@recipes.example>"


@pytest.mark.parametrize(
    "address", ["eve@example.test\r\nBcc: x@y.z", "no-at-sign", "a@b\x00c", "zoë@example.test"]
)
def test_unusable_addresses_are_refused(address: str) -> None:
    with pytest.raises(InvalidAddress):
        COMPOSER.welcome(to=MailRecipient(1, "eve", address, "customer"))


def test_display_name_is_bounded_and_single_line() -> None:
    assert display_name("a\u2028b\x85c\td") == "a b c d"
    assert len(display_name("x" * 500)) == 64
