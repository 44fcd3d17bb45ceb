"""Each service's Dockerfile: multi-stage with uv, only its own package, non-root, healthcheck."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: service: (default command, port its healthcheck asks)
SERVICES = {
    "auth": ("api", 8001),
    "recipes": ("api", 8002),
    "notifier": ("api", 8003),
    "media": ("worker", 9004),
    "backup": ("worker", 9005),
}


def _stages(text: str) -> list[str]:
    return re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_dockerfile_builds_one_service_in_stages_and_runs_unprivileged(name: str) -> None:
    text = (ROOT / "services" / name / "Dockerfile").read_text()
    command, port = SERVICES[name]
    builder, runtime = _stages(text)

    assert builder.startswith("python:3.11-slim") and " AS builder" in builder
    assert runtime.startswith("python:3.11-slim") and " AS runtime" in runtime
    # uv from PyPI; the pinned set from the root pyproject; this service only, beside the libs.
    assert 'pip install "uv==' in builder
    assert "--constraint" in builder
    assert f"--editable ./services/{name}" in builder
    copied = re.findall(r"^COPY (\S+)", builder, flags=re.MULTILINE)
    assert [c for c in copied if c.startswith("services/")] == [f"services/{name}"]
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    assert re.search(r"^USER app$", runtime, flags=re.MULTILINE)
    assert f"http://127.0.0.1:{port}/readyz" in runtime.split("HEALTHCHECK", 1)[1]
    assert runtime.rstrip().endswith(f'CMD ["{name}", "{command}"]')


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_images_come_from_docker_hub_only(name: str) -> None:
    text = (ROOT / "services" / name / "Dockerfile").read_text()
    for image in re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE):
        assert "." not in image.split("/")[0].split(":")[0], image


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())

    assert {".git", ".venv", "var", "uv.lock", "services/*/tests"} <= ignored
