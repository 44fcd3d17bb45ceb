"""Configuration of the backup service, from ``BACKUP_*`` environment variables."""

from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit import ServiceSettings

SERVICE_NAME = "backup"
#: The tick job this service emits and answers; other services' ticks share the routing key.
BACKUP_JOB = "weekly-backup"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BACKUP_")

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/backup"
    health_port: int = 9005
    data_dir: Path = Path("var/backup")
    #: Where exports go; ``<data_dir>/backups`` when unset.
    backup_dir: Path | None = None
    #: When the weekly export runs (UTC): Sunday 02:00 by default.
    backup_cron: str = "0 2 * * 0"
    #: How late a missed slot is still exported after downtime.
    catch_up_grace: timedelta = timedelta(days=7)
    #: Exports kept on disk; older ones and their manifests are pruned.
    keep_last: int = Field(default=8, ge=1)

    @property
    def backups_path(self) -> Path:
        return self.backup_dir if self.backup_dir is not None else self.data_dir / "backups"
