from email.message import EmailMessage
from pathlib import Path

from notifier.dispatch import RateLimiter
from notifier.transport import FileTransport


async def test_file_transport_writes_one_eml_per_message_id(tmp_path: Path) -> None:
    transport = FileTransport(tmp_path / "mail")
    message = EmailMessage()
    message["Message-ID"] = "<digest.1.2026-11-23@x.example>"
    message["Subject"] = "hello"
    message.set_content("body")
    await transport.send(message)
    await transport.send(message)  # the same mail again replaces the file
    (written,) = (tmp_path / "mail").iterdir()
    assert written.name == "digest.1.2026-11-23_x.example.eml"
    assert b"Subject: hello" in written.read_bytes()


async def test_rate_limiter_spaces_acquisitions() -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    limiter = RateLimiter(per_second=4, clock=lambda: 100.0, sleep=sleep)
    for _ in range(4):
        await limiter.acquire()
    assert slept == [0.25, 0.5, 0.75]  # the first at once, then one slot each


async def test_no_limit_never_waits() -> None:
    async def sleep(delay: float) -> None:
        raise AssertionError("must not wait")

    limiter = RateLimiter(per_second=0, clock=lambda: 100.0, sleep=sleep)
    for _ in range(100):
        await limiter.acquire()
