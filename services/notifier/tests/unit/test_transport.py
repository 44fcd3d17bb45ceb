from pathlib import Path

from notifier.mail.mime import OutgoingMail, header
from notifier.mail.transport import FileTransport


async def test_file_transport_writes_one_eml_per_message_id(tmp_path: Path) -> None:
    transport = FileTransport(tmp_path / "mail")
    message_id = "<digest.1.2026-11-23@x.example>"
    data = (header("Message-ID", message_id) + header("Subject", "hello") + "\r\nbody").encode()
    mail = OutgoingMail(message_id, "from@x.example", "to@x.example", data)
    await transport.send(mail)
    await transport.send(mail)  # the same mail again replaces the file
    (written,) = (tmp_path / "mail").iterdir()
    assert written.name == "digest.1.2026-11-23_x.example.eml"
    assert b"Subject: hello" in written.read_bytes()
