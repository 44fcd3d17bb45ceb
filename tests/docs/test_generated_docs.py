"""Generated documentation stays in step with the code it is generated from."""

import contextlib
import io
import runpy
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def script_output(name: str) -> str:
    buffer = io.StringIO()
    argv = sys.argv
    sys.argv = [name]
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
