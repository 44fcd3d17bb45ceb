"""Writing a ``multipart/alternative`` message straight to bytes.

Building an ``EmailMessage`` and letting it (or aiosmtplib) flatten it costs about 2 ms of CPU a
mail, mostly in the header registry and folding; the digest's headers are few and known, so
they are written here directly and only unusual values go through the email package's SMTP
policy. The rules that keep user text out of header syntax:

- a value written directly is printable ASCII only (no CR, LF or other control character) and
  its line stays within RFC 5322's 998 characters;
- a mailbox is written directly only when its display name is plain words (atext and spaces)
  and its address a dot-atom: what the email package itself would write unquoted;
- anything else is folded by ``email.policy.SMTP`` from a parsed header object (quoting,
  RFC 2047 encoding, folding), exactly as ``EmailMessage`` would.

Bodies are UTF-8: sent as they are (``7bit``) when ASCII with lines within 998 characters, as
most digests are, else quoted-printable, which is 7-bit safe whatever the text.
"""

import binascii
import re
import secrets
from dataclasses import dataclass
from email.headerregistry import Address
from email.policy import SMTP

_MAX_LINE = 998
#: Control characters a 7bit body may not carry (line ends are normalised before).
_UNSAFE_IN_7BIT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
#: atext and spaces, less "=" and "?" (which could read as an RFC 2047 encoded word)
_WORDS = re.compile(r"[A-Za-z0-9!#$%&'*+/^_`{|}~ -]*")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@dataclass(frozen=True)
class OutgoingMail:
    """One composed mail: its envelope and its bytes, ready for any transport."""

    message_id: str
    sender: str
    recipient: str
    data: bytes


def header(name: str, value: str) -> str:
    """``Name: value`` with CRLF; an unusual value is encoded and folded by the SMTP policy."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"{name}: header values may not contain CR or LF")
    line = f"{name}: {value}\r\n"
    if len(line) <= _MAX_LINE and _PRINTABLE.fullmatch(value) and value == value.strip():
        return line
    return str(SMTP.header_factory(name, value).fold(policy=SMTP))


def mailbox_header(name: str, address: Address) -> str:
    """An address header (``To``, ``From``): written directly only when nothing needs quoting."""
    simple = (
        _WORDS.fullmatch(address.display_name)
        and address.display_name == " ".join(address.display_name.split())
        and _DOT_ATOM.fullmatch(address.username)
        and _DOT_ATOM.fullmatch(address.domain)
    )
    if simple:
        value = (
            f"{address.display_name} <{address.addr_spec}>"
            if address.display_name
            else address.addr_spec
        )
        line = f"{name}: {value}\r\n"
        if len(line) <= 78:
            return line
    return str(SMTP.header_factory(name, address).fold(policy=SMTP))


def encoded_body(text: str) -> tuple[bytes, bytes]:
    """``text`` as a part body with CRLF line ends, and its transfer encoding: ``7bit`` when
    it is ASCII with lines SMTP carries as they are, else quoted-printable (of its UTF-8)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if (
        text.isascii()
        and not _UNSAFE_IN_7BIT.search(text)
        and max(map(len, text.split("\n"))) <= _MAX_LINE
    ):
        return b"7bit", text.replace("\n", "\r\n").encode("ascii")
    encoded = binascii.b2a_qp(text.encode(), istext=True).replace(b"\n", b"\r\n")
    return b"quoted-printable", encoded


def alternative(headers: list[str], *, text: str, html: str) -> bytes:
    """A ``multipart/alternative`` message: ``headers`` (lines from ``header``), then a text
    and an HTML part."""
    parts = [("plain", *encoded_body(text)), ("html", *encoded_body(html))]
    boundary = _boundary([body for _, _, body in parts])
    delimiter = b"--" + boundary
    chunks = [
        "".join(headers).encode("ascii"),
        b"MIME-Version: 1.0\r\n",
        b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n\r\n',
    ]
    for subtype, encoding, body in parts:
        chunks += [
            delimiter + b"\r\n",
            b"Content-Type: text/" + subtype.encode() + b'; charset="utf-8"\r\n',
            b"Content-Transfer-Encoding: " + encoding + b"\r\n\r\n",
            body,
            b"\r\n",  # belongs to the delimiter that follows (RFC 2046), not to the body
        ]
    chunks.append(delimiter + b"--\r\n")
    return b"".join(chunks)


def _boundary(parts: list[bytes]) -> bytes:
    # 128 random bits will not be in the text, but check as RFC 2046 asks.
    while True:
        boundary = b"=_" + secrets.token_hex(16).encode()
        if not any(boundary in part for part in parts):
            return boundary
