"""The recipes service, declared (``recipes api|worker|migrate``)."""

from pathlib import Path

from recipes.app import create_app
from recipes.handlers import HANDLERS
from recipes.settings import SERVICE_NAME, Settings
from servicekit.service import ServiceSpec

SERVICE_DIR = Path(__file__).resolve().parents[2]


service = ServiceSpec(
    name=SERVICE_NAME,
    settings=Settings,
    service_dir=SERVICE_DIR,
    create_app=create_app,
    handlers=HANDLERS,
)
main = service.main

if __name__ == "__main__":
    raise SystemExit(main())
