"""``notifier send-digest``: a digest by hand, with the same once-only guarantee."""

from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest

from notifier.commands import send_digest
from notifier.main import main
from notifier.settings import Settings
from servicekit import SessionMaker
from tests.support import SmtpServer, add_recipe, add_user, address_of

pytestmark = pytest.mark.integration


async def test_send_digest_twice_sends_once_per_user(
    session_maker: SessionMaker, settings: Settings, smtp: SmtpServer
) -> None:
    await add_user(session_maker, 1, "alice")
    await add_user(session_maker, 2, "bob", daily_digest=False)
    await add_recipe(
        session_maker, 10, "Pie", seller_id=9, at=datetime.now(UTC) - timedelta(hours=1)
    )

    assert await send_digest(settings) == (1, 1)
    assert await send_digest(settings) == (0, 0)
    assert smtp.mailbox.recipients() == [address_of("user1")]
    assert f" {datetime.now(UTC).day} " in str(smtp.mailbox.messages[0]["Subject"])


async def test_without_smtp_mail_is_written_as_eml_files(
    session_maker: SessionMaker, settings: Settings, tmp_path: Path
) -> None:
    await add_user(session_maker, 1, "alice")
    await add_recipe(
        session_maker, 10, "Pie", seller_id=9, at=datetime.now(UTC) - timedelta(hours=1)
    )
    local = settings.model_copy(update={"smtp_host": "", "data_dir": tmp_path})

    assert await send_digest(local, date(2026, 11, 23)) == (1, 1)

    (written,) = (tmp_path / "mail").iterdir()
    assert written.name == "digest.1.2026-11-23_recipes.localhost.eml"
    message = message_from_bytes(written.read_bytes(), policy=default_policy)
    assert message["To"] == "alice <user1@example.test>"
    assert message.get_content_type() == "multipart/alternative"


@pytest.mark.usefixtures("restore_logging")
def test_command_line(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("NOTIFIER_SMTP_HOST", "")
    monkeypatch.setenv("NOTIFIER_DATA_DIR", str(tmp_path))
    assert main(["send-digest", "--date", "2026-11-23"]) == 0
    assert "planned 0 digests" in capsys.readouterr().out
