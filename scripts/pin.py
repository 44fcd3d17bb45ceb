"""Rewrite ``[tool.uv] constraint-dependencies`` in the root pyproject from the synced venv.

Every direct and transitive version is pinned as ``name==version`` in the repo, so installs are
reproducible without committing ``uv.lock`` (which records download addresses).
"""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The workspace's own packages (never pinned): every library and service of the checkout.
WORKSPACE = {
    p.parent.name
    for folder in ("libs", "services")
    for p in ROOT.glob(f"{folder}/*/pyproject.toml")
}


def frozen_pins() -> list[str]:
    out = subprocess.run(
        ["uv", "pip", "freeze", "--exclude-editable"], check=True, capture_output=True, text=True
    ).stdout
    pins = [line.strip() for line in out.splitlines() if "==" in line]
    return sorted(
        (pin for pin in pins if pin.split("==")[0].lower() not in WORKSPACE), key=str.lower
    )


def main() -> None:
    pyproject = ROOT / "pyproject.toml"
    body = "\n".join(f'    "{pin}",' for pin in frozen_pins())
    text = re.sub(
        r"constraint-dependencies = \[[^\]]*\]",
        f"constraint-dependencies = [\n{body}\n]",
        pyproject.read_text(),
    )
    pyproject.write_text(text)


if __name__ == "__main__":
    main()
