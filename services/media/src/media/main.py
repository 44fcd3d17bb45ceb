"""The media service, declared (``media worker|migrate``)."""

from pathlib import Path

from media.handlers import HANDLERS
from media.settings import SERVICE_NAME, Settings
from media.worker import open_pipeline
from servicekit.service import ServiceSpec

SERVICE_DIR = Path(__file__).resolve().parents[2]


service = ServiceSpec(
    name=SERVICE_NAME,
    settings=Settings,
    service_dir=SERVICE_DIR,
    handlers=HANDLERS,
    resources=open_pipeline,
)
main = service.main

if __name__ == "__main__":
    raise SystemExit(main())
