"""Third-party requirements of some workspace packages, and the pinned set, for an image build.

``python3 requirements.py REQUIREMENTS CONSTRAINTS DIR...`` writes the dependencies the packages
in DIR... declare (the workspace's own packages left out: they are installed from source in a
later layer) and the root pyproject's constraint-dependencies. Reads only pyproject.toml files,
so the layer that installs them is rebuilt only when one of those changes.
"""

import sys
import tomllib
from pathlib import Path

#: The build backend of the workspace packages (and what it needs for an editable install),
#: installed here so that the layer installing them needs no package index.
BUILD_BACKEND = ["hatchling", "editables"]


def main() -> None:
    requirements_path, constraints_path, *folders = sys.argv[1:]
    projects = [tomllib.loads((Path(f) / "pyproject.toml").read_text()) for f in folders]
    local = {project["project"]["name"] for project in projects}
    wanted = list(BUILD_BACKEND)
    for project in projects:
        for requirement in project["project"].get("dependencies", []):
            name = requirement.split("[")[0].split(";")[0].strip()
            if name not in local and requirement not in wanted:
                wanted.append(requirement)
    Path(requirements_path).write_text("\n".join(wanted) + "\n")
    pins = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["uv"]
    Path(constraints_path).write_text("\n".join(pins["constraint-dependencies"]) + "\n")


if __name__ == "__main__":
    main()
