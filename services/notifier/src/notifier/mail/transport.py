"""Where composed mail goes: an SMTP server through a small pool of reused connections, or
``.eml`` files in a directory when no SMTP server is configured (development).

The dispatcher only knows the ``Transport`` protocol, so everything up to the transport is the
same code whichever is injected. A transport raises ``TemporaryMailError`` for what may work
later (a 4xx for the recipient or message; ``ServerUnavailable`` when the server itself cannot be
reached or refuses us) and ``PermanentMailError`` for a 5xx refusal of the recipient or message.

Encryption (issue 16 row 7): STARTTLS is used whenever the server offers it (``start_tls=None``,
aiosmtplib's opportunistic mode; ``True`` requires it, ``False`` turns it off), certificates are
verified, and credentials are never sent over a connection that is not encrypted: the login is
refused as ``ServerUnavailable``, so the mail waits for a server (or setting) that can take it.
"""

import asyncio
import contextlib
import os
import re
import uuid
from pathlib import Path
from typing import Protocol

import aiosmtplib

from notifier.mail.mime import OutgoingMail


class TemporaryMailError(Exception):
    """Worth another attempt later."""


class ServerUnavailable(TemporaryMailError):
    """The server cannot be reached or refuses us (not this recipient): pause, do not count."""


class CleartextLoginRefused(ServerUnavailable):
    """Credentials are configured but the connection is not encrypted: they stay unsent."""


class PermanentMailError(Exception):
    """The server refused this recipient or message for good."""


class Transport(Protocol):
    async def send(self, mail: OutgoingMail) -> None: ...

    async def close(self) -> None: ...


class FileTransport:
    """Writes each message as ``<dir>/<message-id>.eml`` (atomically: temp file, then rename)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, mail: OutgoingMail) -> None:
        await asyncio.to_thread(self._write, mail)

    def _write(self, mail: OutgoingMail) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", mail.message_id or uuid.uuid4().hex)
        target = self.directory / f"{stem.strip('_')}.eml"
        temporary = target.with_suffix(f".{uuid.uuid4().hex}.tmp")
        temporary.write_bytes(mail.data)
        os.replace(temporary, target)

    async def close(self) -> None:
        return None


class SmtpTransport:
    """Up to ``connections`` SMTP sessions, each reused for many messages and reopened on error."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        connections: int = 4,
        username: str = "",
        password: str = "",
        use_tls: bool = False,
        start_tls: bool | None = None,
        cert_bundle: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._host = host
        self._port = port
        self._use_tls = use_tls
        self._start_tls = start_tls
        self._cert_bundle = cert_bundle
        self._timeout = timeout
        self._login = (username, password) if username else None
        self._idle: asyncio.Queue[aiosmtplib.SMTP | None] = asyncio.Queue()
        for _ in range(connections):
            self._idle.put_nowait(None)  # a slot; the connection opens on first use
        self._open: set[aiosmtplib.SMTP] = set()

    async def send(self, mail: OutgoingMail) -> None:
        client = await self._idle.get()
        try:
            if client is None or not client.is_connected:
                await self._discard(client)  # a session the server ended: its socket too
                client = await self._connect()
            # The bytes are final: send_message would parse and flatten them again.
            await client.sendmail(mail.sender, [mail.recipient], mail.data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            if codes and all(code >= 500 for code in codes):
                raise PermanentMailError(str(exc)) from exc
            raise TemporaryMailError(str(exc)) from exc
        except (aiosmtplib.SMTPDataError, aiosmtplib.SMTPRecipientRefused) as exc:
            if exc.code >= 500:
                raise PermanentMailError(f"{exc.code} {exc.message}") from exc
            raise TemporaryMailError(f"{exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Connection trouble, a refused sender, failed login: not the recipient's fault.
            await self._discard(client)
            client = None
            raise ServerUnavailable(str(exc) or type(exc).__name__) from exc
        except BaseException:
            # Cancelled (or failed) half-way through a conversation: the session's state is
            # unknown, so it is closed here rather than left for the garbage collector.
            await self._discard(client)
            client = None
            raise
        finally:
            self._idle.put_nowait(client)

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            use_tls=self._use_tls,
            start_tls=self._start_tls,
            cert_bundle=self._cert_bundle,
            timeout=self._timeout,
        )
        try:
            await client.connect()
            if self._login is not None:
                if client.get_transport_info("sslcontext") is None:
                    raise CleartextLoginRefused(
                        f"{self._host}:{self._port} offers no TLS:"
                        " credentials not sent in clear text"
                    )
                await client.login(*self._login)
        except BaseException:
            # A failed STARTTLS (an unverifiable certificate) or login leaves the socket open.
            client.close()
            raise
        self._open.add(client)
        return client

    async def _discard(self, client: aiosmtplib.SMTP | None) -> None:
        if client is not None:
            self._open.discard(client)
            client.close()

    async def close(self) -> None:
        for client in list(self._open):
            try:
                if client.is_connected:
                    with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                        await client.quit()
            finally:
                client.close()  # also a session the server ended: its socket may still be open
        self._open.clear()
