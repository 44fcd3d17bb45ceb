"""SMTP sessions the transport must not leave behind: a send cancelled half-way (a worker
stopping in the middle of a digest run) closes its session instead of pooling it."""

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from notifier.mail.mime import OutgoingMail, header
from notifier.mail.transport import SmtpTransport
from servicekit.testing import eventually
from tests.support import Mailbox, free_port, open_connections_to


class StallingMailbox(Mailbox):
    """Holds the first message's DATA until released; accepts the others at once."""

    def __init__(self) -> None:
        super().__init__()
        self.first_arrived = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(  # noqa: N802  (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        if not self.first_arrived.is_set():
            self.first_arrived.set()
            await asyncio.to_thread(self.release.wait, 30)
            return "451 not this one"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def stalling() -> Iterator[tuple[StallingMailbox, int]]:
    mailbox, port = StallingMailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    mailbox.release.set()
    controller.stop()


def mail(n: int) -> OutgoingMail:
    data = header("Message-ID", f"<m{n}@x.example>") + header("Subject", "hi") + "\r\nbody"
    return OutgoingMail(f"<m{n}@x.example>", "from@x.example", "to@x.example", data.encode())


async def test_a_send_cancelled_half_way_closes_its_session(
    stalling: tuple[StallingMailbox, int],
) -> None:
    mailbox, port = stalling
    transport = SmtpTransport(host="127.0.0.1", port=port, connections=1, timeout=5)
    try:
        sending = asyncio.create_task(transport.send(mail(1)))
        await asyncio.to_thread(mailbox.first_arrived.wait, 10)
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        # Pooled again half-way through DATA, the session answered the next send's commands
        # with the stalled message's reply, or not at all.
        await eventually(lambda: open_connections_to(port) == 0, within=10, what="closed")
        await asyncio.wait_for(transport.send(mail(2)), 10)
    finally:
        await transport.close()
    assert [m["Message-ID"] for m in mailbox.messages] == ["<m2@x.example>"]
