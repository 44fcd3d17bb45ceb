"""Composing the mails: Jinja2 templates, one ``multipart/alternative`` message per recipient.

The HTML templates are autoescaped. A display name is stripped of control characters first and
an address that is not plain ASCII with one ``@`` is refused; headers are then written by
``mime`` (which writes only printable ASCII itself and leaves quoting and encoding to the email
package's SMTP policy), so text a user typed can never add a header.

A digest is the same for everyone who shares its content but for the greeting: each template is
rendered once per distinct content with a random marker standing for the username, and each
mail fills the recipient's name in (HTML-escaped in the HTML part, as autoescaping would). So a
template uses ``{{ username }}`` as it is, never through a filter.
"""

import re
import secrets
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.headerregistry import Address
from email.utils import format_datetime, parseaddr
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import escape

from notifier.mail import mime
from notifier.mail.content import DigestContent
from notifier.mail.mime import OutgoingMail
from notifier.mail.unsubscribe import UnsubscribeTokens

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
    email = recipient.email
    # Internationalised addresses would need SMTPUTF8 from every server on the way: refused.
    if _CONTROL.search(email) or "@" not in email or not email.isascii():
        raise InvalidAddress(f"unusable address for user {recipient.user_id}")
    try:
        username, domain = recipient.email.rsplit("@", 1)
        return Address(
            display_name=display_name(recipient.username), username=username, domain=domain
        )
    except (ValueError, IndexError) as exc:
        raise InvalidAddress(f"unusable address for user {recipient.user_id}") from exc


class MailComposer:
    _BODY_CACHE_LIMIT = 1000

    def __init__(self, *, sender: str, public_base_url: str, tokens: UnsubscribeTokens) -> None:
        name, addr = parseaddr(sender)
        if "@" not in addr:
            raise ValueError(f"mail_from needs an address: {sender!r}")
        self._sender = Address(display_name=name, addr_spec=addr)
        self._from_header = mime.mailbox_header("From", self._sender)
        self._domain = addr.rsplit("@", 1)[1]
        self._unsubscribe_base = public_base_url.rstrip("/") + UNSUBSCRIBE_PATH
        self._tokens = tokens
        self._templates = Environment(
            loader=PackageLoader("notifier.mail", "templates"),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        # Random per composer: no recipe title or username can contain it by chance or design.
        self._username_marker = "username" + secrets.token_hex(16)
        self._bodies: dict[Hashable, tuple[list[str], list[str]]] = {}

    def unsubscribe_url(self, user_id: int) -> str:
        # The token is URL-safe base64 and dots: it needs no quoting.
        return self._unsubscribe_base + "?token=" + self._tokens.issue(user_id)

    def digest(
        self, *, to: MailRecipient, digest_date: date, content: DigestContent
    ) -> OutgoingMail:
        subject = f"Your recipe digest for {digest_date.strftime('%A %-d %B')}"
        return self._compose(
            "digest",
            to=to,
            subject=subject,
            message_id=f"digest.{to.user_id}.{digest_date.isoformat()}",
            context={"digest_date": digest_date, "content": content},
            context_key=(digest_date, content),
            headers=[
                # RFC 8058 one-click unsubscribe: the POST needs no login, the token says who.
                mime.header("List-Unsubscribe", f"<{self.unsubscribe_url(to.user_id)}>"),
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
                "Precedence: bulk\r\n",
            ],
        )

    def welcome(self, *, to: MailRecipient) -> OutgoingMail:
        is_seller = to.role == "seller"
        return self._compose(
            "welcome",
            to=to,
            subject="Welcome to the recipe platform",
            message_id=f"welcome.{to.user_id}",
            context={"is_seller": is_seller},
            context_key=is_seller,
        )

    def _compose(
        self,
        template: str,
        *,
        to: MailRecipient,
        subject: str,
        message_id: str,
        context: dict[str, Any],
        context_key: Hashable,
        headers: list[str] | None = None,
    ) -> OutgoingMail:
        address = recipient_address(to)
        text_pieces, html_pieces = self._bodies_of(template, subject, context, context_key)
        message_id = f"<{message_id}@{self._domain}>"
        data = mime.alternative(
            [
                mime.header("Subject", subject),
                self._from_header,
                mime.mailbox_header("To", address),
                mime.header("Date", format_datetime(datetime.now(UTC))),
                # Stable per mail: a receiver can recognise the same digest if it ever came twice.
                mime.header("Message-ID", message_id),
                "Auto-Submitted: auto-generated\r\n",
                *(headers or []),
            ],
            text=to.username.join(text_pieces),
            html=str(escape(to.username)).join(html_pieces),
        )
        return OutgoingMail(message_id, self._sender.addr_spec, address.addr_spec, data)

    def _bodies_of(
        self, template: str, subject: str, context: dict[str, Any], context_key: Hashable
    ) -> tuple[list[str], list[str]]:
        """Both parts rendered for a marker username, split where the username goes."""
        key = (template, subject, context_key)
        bodies = self._bodies.get(key)
        if bodies is None:
            context = {**context, "subject": subject, "username": self._username_marker}
            text = self._templates.get_template(f"{template}.txt").render(context)
            html = self._templates.get_template(f"{template}.html").render(context)
            if len(self._bodies) >= self._BODY_CACHE_LIMIT:
                self._bodies.clear()
            bodies = self._bodies[key] = (
                text.split(self._username_marker),
                html.split(self._username_marker),
            )
        return bodies
