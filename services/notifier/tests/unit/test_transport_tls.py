"""SMTP encryption against real aiosmtpd servers on loopback (issue 16 row 7): STARTTLS whenever
the server offers it, and credentials never sent over a connection that is not encrypted."""

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from notifier.mail.mime import OutgoingMail, header
from notifier.mail.transport import CleartextLoginRefused, ServerUnavailable, SmtpTransport
from notifier.settings import Settings
from tests.support import Mailbox, free_port

USER, PASSWORD = "mailer", "s3cret"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class Logins:
    """An aiosmtpd authenticator that records every login it was offered."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.seen.append((auth_data.login.decode(), session.ssl is not None))
        ok = (auth_data.login.decode(), auth_data.password.decode()) == (USER, PASSWORD)
        return AuthResult(success=ok)


class EncryptionMailbox(Mailbox):
    """Also records whether each message came over an encrypted connection."""

    def __init__(self) -> None:
        super().__init__()
        self.encrypted: list[bool] = []

    async def handle_DATA(  # noqa: N802  (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        self.encrypted.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


class Server:
    def __init__(self, *, tls: ssl.SSLContext | None) -> None:
        self.mailbox = EncryptionMailbox()
        self.logins = Logins()
        self.port = free_port()
        self.controller = Controller(
            self.mailbox,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=tls,
            authenticator=self.logins,
            auth_require_tls=False,  # a careless server: the client must be the careful one
        )


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


def serve(tls: ssl.SSLContext | None) -> Iterator[Server]:
    server = Server(tls=tls)
    server.controller.start()
    yield server
    server.controller.stop()


@pytest.fixture
def starttls_server(certificate: tuple[Path, Path]) -> Iterator[Server]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    yield from serve(context)


@pytest.fixture
def plain_server() -> Iterator[Server]:
    yield from serve(None)


def mail() -> OutgoingMail:
    data = (header("Message-ID", "<m1@x.example>") + header("Subject", "hi") + "\r\nbody").encode()
    return OutgoingMail("<m1@x.example>", "from@x.example", "to@x.example", data)


async def test_starttls_is_used_when_offered_and_the_login_is_encrypted(
    starttls_server: Server, certificate: tuple[Path, Path]
) -> None:
    transport = SmtpTransport(
        host="127.0.0.1",
        port=starttls_server.port,
        username=USER,
        password=PASSWORD,
        cert_bundle=str(certificate[0]),
    )
    try:
        await transport.send(mail())
    finally:
        await transport.close()
    assert starttls_server.logins.seen == [(USER, True)]
    assert starttls_server.mailbox.encrypted == [True]


async def test_starttls_without_credentials_too(
    starttls_server: Server, certificate: tuple[Path, Path]
) -> None:
    transport = SmtpTransport(
        host="127.0.0.1", port=starttls_server.port, cert_bundle=str(certificate[0])
    )
    try:
        await transport.send(mail())
    finally:
        await transport.close()
    assert starttls_server.mailbox.encrypted == [True]


async def test_an_unverifiable_certificate_is_not_trusted(starttls_server: Server) -> None:
    transport = SmtpTransport(host="127.0.0.1", port=starttls_server.port)
    with pytest.raises(ServerUnavailable):
        await transport.send(mail())
    await transport.close()
    assert starttls_server.mailbox.messages == []


async def test_credentials_are_not_sent_in_clear_text(plain_server: Server) -> None:
    transport = SmtpTransport(
        host="127.0.0.1", port=plain_server.port, username=USER, password=PASSWORD
    )
    with pytest.raises(CleartextLoginRefused):
        await transport.send(mail())
    await transport.close()
    assert plain_server.logins.seen == []
    assert plain_server.mailbox.messages == []


async def test_without_credentials_a_plain_server_still_gets_mail(plain_server: Server) -> None:
    transport = SmtpTransport(host="127.0.0.1", port=plain_server.port)
    try:
        await transport.send(mail())
    finally:
        await transport.close()
    assert plain_server.mailbox.encrypted == [False]


def test_starttls_is_opportunistic_by_default() -> None:
    assert Settings().smtp_start_tls is None


def test_credentials_with_tls_turned_off_refuse_to_start() -> None:
    with pytest.raises(ValidationError, match="credentials need TLS"):
        Settings(smtp_host="mail.example", smtp_username=USER, smtp_start_tls=False)
