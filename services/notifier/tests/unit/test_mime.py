"""Writing messages directly: the same headers the email package would write, valid MIME."""

from email import message_from_bytes
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.policy import default as default_policy

import pytest

from notifier.mail.mime import alternative, encoded_body, header, mailbox_header

NAMES = [
    "",
    "alice",
    "Alice Smith",
    "o'brien-smith_2",
    "J.R. Hartley",  # a special: quoted
    "Eve Bcc: victim@example.test body",
    "=?utf-8?q?forged?=",
    "Zoë",
    "a" * 64,
    "  padded  ",
]


def policy_folded(name: str, value: object) -> str:
    return str(SMTP.header_factory(name, value).fold(policy=SMTP))


@pytest.mark.parametrize("display_name", NAMES)
def test_mailbox_header_is_what_the_email_package_writes(display_name: str) -> None:
    address = Address(display_name=display_name, username="user.1", domain="example.test")
    assert mailbox_header("To", address) == policy_folded("To", address)


@pytest.mark.parametrize(
    "value",
    [
        "Your recipe digest for Monday 23 November",
        "Ünïcode subject",
        "tab\tinside",
        "x " * 60,
    ],
)
def test_header_reads_back_as_the_value(value: str) -> None:
    raw = (header("Subject", value) + "\r\n").encode()
    parsed = message_from_bytes(raw, policy=default_policy)
    assert parsed["Subject"] == value


def test_a_long_url_stays_one_unencoded_line() -> None:
    url = "<https://recipes.example/api/notifications/unsubscribe/?token=" + "a" * 200 + ">"
    assert header("List-Unsubscribe", url) == f"List-Unsubscribe: {url}\r\n"


@pytest.mark.parametrize("value", ["a\r\nBcc: x@y.z", "a\nb", "a\rb"])
def test_line_breaks_in_a_header_value_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        header("Subject", value)


def test_ascii_body_goes_as_it_is_and_other_text_as_quoted_printable() -> None:
    assert encoded_body("Hello\nworld\n") == (b"7bit", b"Hello\r\nworld\r\n")
    for text in ["Zoë\n", "x" * 999, "bell\x07\n"]:
        encoding, body = encoded_body(text)
        assert encoding == b"quoted-printable"
        assert all(len(line) <= 76 for line in body.split(b"\r\n"))


def parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


@pytest.mark.parametrize("html", ["<p>plain ascii</p>\n", "<p>Zoë &amp; \u2603</p>\n"])
def test_alternative_parses_back_to_both_parts(html: str) -> None:
    text = "Good morning, Zoë!\n" + "long line " * 120 + "\n"
    data = alternative([header("Subject", "hi")], text=text, html=html)
    message = parsed(data)
    assert message["Subject"] == "hi"
    assert message.get_content_type() == "multipart/alternative"
    plain, rich = message.iter_parts()
    # Line ends come back as sent, CRLF (as from an SMTP-policy EmailMessage).
    assert plain.get_content().replace("\r\n", "\n") == text
    assert rich.get_content().replace("\r\n", "\n") == html
    assert data.isascii()
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
