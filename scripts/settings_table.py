"""Print every service's settings as a Markdown table (variable, default, meaning).

The Settings classes are the one place for these facts; the README's table is generated here.
"""

import importlib
import inspect
import re
import sys
from pathlib import PurePath

from pydantic_settings import BaseSettings

from servicekit.settings import ServiceSettings, TokenSettings

SERVICES = ["auth", "recipes", "media", "notifier", "backup"]
#: Fields every service with that field uses the same way.
CONVENTIONS = {
    "api_host": "address the API listens on",
    "api_port": "port the API listens on",
    "data_dir": "the service's files (relative to the working directory)",
    "environment": "`development` allows built-in secrets; anything else requires them",
}


def source_comments(settings_class: type) -> dict[str, str]:
    """``name -> text`` of the comment or docstring written beside each field in the source."""
    comments: dict[str, str] = {}
    for klass in reversed(settings_class.__mro__):
        if not issubclass(klass, BaseSettings) or klass is BaseSettings:
            continue
        lines = inspect.getsource(klass).splitlines()
        pending: list[str] = []
        for index, line in enumerate(lines):
            stripped = line.strip()
            if stripped.startswith("#"):
                pending.append(stripped.lstrip("#:").strip())
                continue
            match = re.match(r"(\w+)\s*:", stripped)
            if match and pending:
                comments[match.group(1)] = " ".join(pending)
            elif match and index + 1 < len(lines) and lines[index + 1].strip().startswith('"""'):
                comments[match.group(1)] = lines[index + 1].strip().strip('"')
            pending = []
    return comments


def rows(settings_class: type[BaseSettings], prefix: str, skip: set[str]) -> list[str]:
    comments = source_comments(settings_class)
    lines = []
    for name, field in settings_class.model_fields.items():
        if name in skip:
            continue
        value = field.get_default(call_default_factory=True)
        shown = str(value) if isinstance(value, PurePath) else repr(value)
        default = "(required)" if field.is_required() else shown
        if any(word in name for word in ("secret", "password", "private_key")):
            default = "(development only)" if not field.is_required() else default
        meaning = field.description or comments.get(name) or CONVENTIONS.get(name, "")
        meaning = meaning.replace("|", "\\|")
        lines.append(f"| `{prefix}{name.upper()}` | `{default}` | {meaning} |")
    return lines


HEADER = "| variable | default | meaning |\n|---|---|---|"


def main() -> None:
    print("\n### Every service (prefix `AUTH_`, `RECIPES_`, `MEDIA_`, `NOTIFIER_`, `BACKUP_`)\n")
    print(HEADER)
    print("\n".join(rows(ServiceSettings, "<PREFIX>", set())))
    print("\n### Services that verify tokens (recipes, notifier)\n")
    print(HEADER)
    print("\n".join(rows(TokenSettings, "<PREFIX>", set())))
    common = set(ServiceSettings.model_fields) | set(TokenSettings.model_fields)
    for service in sys.argv[1:] or SERVICES:
        settings_class: type[BaseSettings] = importlib.import_module(f"{service}.settings").Settings
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        print(f"\n### {service}\n")
        print(HEADER)
        print("\n".join(rows(settings_class, prefix, common)))


if __name__ == "__main__":
    main()
