"""Composing the mails: Jinja2 templates, one ``multipart/alternative`` message per recipient.

The HTML templates are autoescaped. Headers go only through ``EmailMessage`` and
``headerregistry.Address``: a display name is stripped of control characters first (the policy
would refuse CR/LF anyway), and an address that does not parse is refused, so text a user typed
can never add a header.
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from notifier.content import DigestContent
from notifier.unsubscribe import UnsubscribeTokens

UNSUBSCRIBE_PATH = "/api/notifications/unsubscribe/"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_DISPLAY_NAME_LIMIT = 64


class InvalidAddress(ValueError):
    """A recipient address that cannot go into a header."""


@dataclass(frozen=True)
class MailRecipient:
    user_id: int
    username: str
    email: str
    role: str


def display_name(username: str) -> str:
    """``username`` made safe for a header: no control characters, bounded length."""
    return " ".join(_CONTROL.sub(" ", username).split())[:_DISPLAY_NAME_LIMIT]


def recipient_address(recipient: MailRecipient) -> Address:
    if _CONTROL.search(recipient.email) or "@" not in recipient.email:
        raise InvalidAddress(f"unusable address for user {recipient.user_id}")
    try:
        username, domain = recipient.email.rsplit("@", 1)
        return Address(
            display_name=display_name(recipient.username), username=username, domain=domain
        )
    except (ValueError, IndexError) as exc:
        raise InvalidAddress(f"unusable address for user {recipient.user_id}") from exc


class MailComposer:
    def __init__(self, *, sender: str, public_base_url: str, tokens: UnsubscribeTokens) -> None:
        name, addr = parseaddr(sender)
        if "@" not in addr:
            raise ValueError(f"mail_from needs an address: {sender!r}")
        self._sender = Address(display_name=name, addr_spec=addr)
        self._domain = addr.rsplit("@", 1)[1]
        self._unsubscribe_base = public_base_url.rstrip("/") + UNSUBSCRIBE_PATH
        self._tokens = tokens
        self._templates = Environment(
            loader=PackageLoader("notifier", "templates"),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def unsubscribe_url(self, user_id: int) -> str:
        return self._unsubscribe_base + "?" + urlencode({"token": self._tokens.issue(user_id)})

    def digest(
        self, *, to: MailRecipient, digest_date: date, content: DigestContent
    ) -> EmailMessage:
        subject = f"Your recipe digest for {digest_date.strftime('%A %-d %B')}"
        message = self._render(
            "digest",
            to=to,
            subject=subject,
            message_id=f"digest.{to.user_id}.{digest_date.isoformat()}",
            digest_date=digest_date,
            content=content,
        )
        # RFC 8058 one-click unsubscribe: the POST needs no login, the token says who.
        message["List-Unsubscribe"] = f"<{self.unsubscribe_url(to.user_id)}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message["Precedence"] = "bulk"
        return message

    def welcome(self, *, to: MailRecipient) -> EmailMessage:
        return self._render(
            "welcome",
            to=to,
            subject="Welcome to the recipe platform",
            message_id=f"welcome.{to.user_id}",
            is_seller=to.role == "seller",
        )

    def _render(
        self, template: str, *, to: MailRecipient, subject: str, message_id: str, **context: Any
    ) -> EmailMessage:
        address = recipient_address(to)
        context.update(username=to.username, subject=subject)
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self._sender
        message["To"] = address
        message["Date"] = format_datetime(datetime.now(UTC))
        # Stable per mail: a receiver can recognise the same digest if it ever came twice.
        message["Message-ID"] = f"<{message_id}@{self._domain}>"
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(self._templates.get_template(f"{template}.txt").render(context))
        message.add_alternative(
            self._templates.get_template(f"{template}.html").render(context), subtype="html"
        )
        return message
