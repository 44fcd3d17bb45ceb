"""The one Dockerfile of the services: stages, a dependency layer, non-root, read-only, health.

Read as text here; tests/containers/ builds the five images and runs each one.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _stages() -> list[str]:
    return re.split(r"^FROM ", DOCKERFILE, flags=re.MULTILINE)[1:]


def _instructions(stage: str, keyword: str) -> list[str]:
    return re.findall(rf"^{keyword} (.+)$", stage, flags=re.MULTILINE)


def test_one_dockerfile_for_every_service() -> None:
    assert not list((ROOT / "services").glob("*/Dockerfile"))
    assert "ARG SERVICE" in DOCKERFILE
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", DOCKERFILE, re.MULTILINE)
    builder, runtime = _stages()
    assert builder.startswith("${BASE_IMAGE} AS builder")
    assert runtime.startswith("${BASE_IMAGE} AS runtime")
    # No `# syntax=` line: it pulls a frontend image, which fails where no registry is reachable.
    assert "syntax=" not in DOCKERFILE


def test_dependencies_are_installed_before_the_sources_are_copied() -> None:
    builder = _stages()[0]
    copies = _instructions(builder, "COPY")
    pyprojects = [i for i, c in enumerate(copies) if c.endswith("pyproject.toml")]
    sources = [i for i, c in enumerate(copies) if c.startswith(("libs/", "services/"))]
    sources = [i for i in sources if not copies[i].endswith("pyproject.toml")]

    assert len(pyprojects) == 4  # the root's pins, both libraries, the service
    assert max(pyprojects) < min(sources)
    install_dependencies = builder.index("--requirement /tmp/requirements.txt")
    assert install_dependencies < builder.index("COPY libs/contracts libs/contracts")
    # The service alone beside the libraries, from the pinned set.
    assert "COPY services/${SERVICE} services/${SERVICE}" in builder
    assert "--constraint /tmp/constraints.txt" in builder
    assert '--editable "./services/${SERVICE}"' in builder


def test_runtime_runs_as_a_numeric_user_with_a_healthcheck() -> None:
    runtime = _stages()[1]

    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    assert _instructions(runtime, "USER") == ["10001:10001"]
    assert "HEALTHCHECK" in runtime and "process.py" in runtime.split("HEALTHCHECK", 1)[1]
    # Extra CA certificates are trusted while building only.
    assert "ca-certificates" not in runtime


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())

    assert {".git", ".venv", "var", "uv.lock", "services/*/tests"} <= ignored
