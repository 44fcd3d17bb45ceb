"""Generated documentation stays in step with the code it is generated from."""

import contextlib
import importlib
import io
import json
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

from servicekit._settings import unknown_variables

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI = ROOT / "docs" / "asyncapi.yaml"
PARSER_DIR = Path(__file__).parent / "asyncapi"


def script_output(name: str) -> str:
    return script_output_with(name)


def script_output_with(name: str, *arguments: str) -> str:
    buffer = io.StringIO()
    argv = sys.argv
    sys.argv = [name, *arguments]
    try:
        with contextlib.redirect_stdout(buffer):
            runpy.run_path(str(ROOT / "scripts" / name), run_name="__main__")
    finally:
        sys.argv = argv
    return buffer.getvalue()


def test_the_readme_lists_every_setting_as_the_settings_classes_define_it() -> None:
    table = script_output("settings_table.py").strip()
    assert table in (ROOT / "README.md").read_text(), (
        "README settings are stale: paste `uv run python scripts/settings_table.py` into it"
    )


def test_the_asyncapi_document_matches_the_contracts() -> None:
    generated = yaml.safe_load(script_output("asyncapi.py"))
    committed = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert generated == committed, "docs/asyncapi.yaml is stale: run `make asyncapi`"


def test_the_asyncapi_document_passes_the_official_parser_without_any_diagnostic() -> None:
    """@asyncapi/parser (pinned in tests/docs/asyncapi/package.json): no error, no warning,
    not even its hints (an older version of the document drew "use 3.1.0")."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (.ci/run installs it)")
    assert (PARSER_DIR / "node_modules" / "@asyncapi" / "parser").is_dir(), (
        "the parser is not installed: `npm ci` in tests/docs/asyncapi (make test does it)"
    )
    result = subprocess.run(
        [node, "validate.mjs", str(ASYNCAPI)],
        cwd=PARSER_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    diagnostics = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert diagnostics == [], diagnostics
    assert result.returncode == 0, result.stderr


def test_every_asyncapi_component_is_used() -> None:
    """What Spectral calls asyncapi-unused-components-*: a component nothing refers to."""
    document = yaml.safe_load(ASYNCAPI.read_text())
    text = ASYNCAPI.read_text()
    referenced = set(re.findall(r"\$ref: '?#/components/(\w+)/([\w.-]+)", text))
    for kind, entries in document["components"].items():
        for name in entries:
            assert (kind, name) in referenced, f"components.{kind}.{name} is never referenced"


def test_the_asyncapi_document_describes_every_consumer_queue_and_producer() -> None:
    document = yaml.safe_load(ASYNCAPI.read_text())
    operations = document["operations"].values()
    received = {
        document["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]["address"]
        for op in operations
        if op["action"] == "receive"
    }
    sent = {
        document["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]["address"]
        for op in operations
        if op["action"] == "send"
    }
    assert received == {"recipes.events", "media.events", "notifier.events", "backup.events"}
    assert {"user.registered", "recipe.created", "schedule.tick"} <= sent
    message = document["components"]["messages"]["UserRegisteredV1"]
    envelope, event = message["payload"]["allOf"]
    assert envelope == {"$ref": "#/components/schemas/Envelope"}
    assert event["properties"]["payload"] == {"$ref": "#/components/schemas/UserRegisteredV1"}


@pytest.mark.parametrize("folder", [PARSER_DIR, ROOT / "tests" / "deploy" / "k8s-models"])
def test_node_lock_files_name_no_registry(folder: Path) -> None:
    """The locks pin versions only (their .npmrc: omit-lockfile-registry-resolved)."""
    lock = json.loads((folder / "package-lock.json").read_text())
    assert not any("resolved" in entry for entry in lock["packages"].values())
    assert "omit-lockfile-registry-resolved=true" in (folder / ".npmrc").read_text()


def test_env_example_is_generated_from_the_settings_classes() -> None:
    generated = script_output_with("settings_table.py", "--env-example")
    assert generated == (ROOT / ".env.example").read_text(), (
        ".env.example is stale: run `make env-example`"
    )


@pytest.mark.parametrize("service", ["auth", "recipes", "media", "notifier", "backup"])
def test_every_default_in_env_example_is_accepted_as_written(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uncommented, .env.example names only real settings, in the format they accept
    (durations in ISO 8601, lists as JSON), and gives back the defaults."""
    settings_class = importlib.import_module(f"{service}.settings").Settings
    prefix = settings_class.model_config["env_prefix"]
    uncommented = tmp_path / "platform.env"
    uncommented.write_text(
        "\n".join(
            line.removeprefix("#")
            for line in (ROOT / ".env.example").read_text().splitlines()
            if line.startswith(f"#{prefix}")
        )
    )
    values = {k: v for k, v in dotenv_values(uncommented).items() if v}
    assert unknown_variables(settings_class, values) == []
    defaults = settings_class().model_dump()
    for name, value in values.items():
        monkeypatch.setenv(name, value)

    assert settings_class().model_dump() == defaults
