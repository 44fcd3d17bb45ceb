"""Print every service's settings as a Markdown table (variable, default, meaning), or with
``--env-example`` as the ``.env.example`` file (each setting commented out at its default).

The Settings classes are the one place for these facts; the README's table and .env.example are
generated here. Defaults are shown the way the environment accepts them: durations in ISO 8601
(``PT2H``; a number of seconds works too), lists as JSON, text as it is. A setting of the shared
classes that each service defaults differently shows each service's default.
"""

import importlib
import inspect
import json
import re
import sys
from pathlib import Path, PurePath
from typing import Any

from pydantic import SecretStr, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from servicekit import ServiceSettings, TokenSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "local"))
from platform_layout import LAYOUT

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


#: What the shared classes say of a setting a service redeclares with its own default.
SHARED = {
    name: field.description
    for klass in (ServiceSettings, TokenSettings)
    for name, field in klass.model_fields.items()
    if field.description
}


def shown(field: FieldInfo, value: Any) -> str:
    """``value`` as one would write it in the environment."""
    if value is None:
        return "(unset)"
    if isinstance(value, str | PurePath):
        return str(value)
    if isinstance(value, SecretStr):
        return "(development only)"
    dumped = TypeAdapter[Any](field.annotation or Any).dump_python(value, mode="json")
    return dumped if isinstance(dumped, str) else json.dumps(dumped)


def service_classes() -> dict[str, type[BaseSettings]]:
    return {
        service: importlib.import_module(f"{service}.settings").Settings for service in LAYOUT.names
    }


def default_of(name: str, field: FieldInfo, classes: dict[str, type[BaseSettings]]) -> str:
    """The default; for a shared setting every service defaults itself, each one's."""
    if not field.is_required():
        return shown(field, field.get_default(call_default_factory=True))
    per_service = {
        service: shown(f, f.get_default(call_default_factory=True))
        for service, klass in classes.items()
        if (f := klass.model_fields.get(name)) is not None and not f.is_required()
    }
    if not per_service:
        return "(required)"
    generic = {value.replace(service, "<service>") for service, value in per_service.items()}
    if len(generic) == 1:
        return generic.pop()
    return ", ".join(f"{service} {value}" for service, value in per_service.items())


def settings(
    settings_class: type[BaseSettings],
    skip: set[str],
    classes: dict[str, type[BaseSettings]],
) -> list[tuple[str, str, str]]:
    """``(NAME, default, meaning)`` of each setting of the class, in source order."""
    comments = source_comments(settings_class)
    found = []
    for name, field in settings_class.model_fields.items():
        if name in skip:
            continue
        default = default_of(name, field, classes)
        if any(word in name for word in ("secret", "password", "private_key")) and (
            default not in ("(required)", "(unset)")
        ):
            default = "(development only)"
        meaning = (
            field.description or comments.get(name) or SHARED.get(name) or CONVENTIONS.get(name, "")
        )
        found.append((name.upper(), default, meaning))
    return found


def sections() -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """``(title, prefix, settings)`` per table: the shared classes, then each service's own."""
    classes = service_classes()
    found = [
        (
            "Every service (prefix `AUTH_`, `RECIPES_`, `MEDIA_`, `NOTIFIER_`, `BACKUP_`)",
            "<PREFIX>",
            settings(ServiceSettings, set(), classes),
        ),
        (
            "Services that verify tokens (recipes, notifier)",
            "<PREFIX>",
            settings(TokenSettings, set(), classes),
        ),
    ]
    common = set(ServiceSettings.model_fields) | set(TokenSettings.model_fields)
    for service, settings_class in classes.items():
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        found.append((service, prefix, settings(settings_class, common, classes)))
    return found


def env_example() -> str:
    """.env.example: every setting of every service, commented out at its default."""
    lines = [
        "# Every setting of every service, generated from the settings classes by",
        "# `make env-example` (scripts/settings_table.py --env-example). Copy what you change to",
        "# var/platform.env (read by `make up`) or set it in the environment; a line left",
        "# commented keeps the default. The runner's own parameters (PLATFORM_*) are in",
        "# deploy/local/platformctl.py. Secrets have no default outside development.",
    ]
    classes = service_classes()
    for service, settings_class in classes.items():
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        lines += ["", f"# --- {service} " + "-" * (88 - len(service))]
        for name, default, meaning in settings(settings_class, set(), classes):
            value = "" if default in ("(required)", "(unset)", "(development only)") else default
            note = " (required outside development)" if default == "(development only)" else ""
            lines.append(f"# {meaning}{note}")
            lines.append(f"#{prefix}{name}={_quoted(value)}")
    return "\n".join(lines) + "\n"


def _quoted(value: str) -> str:
    return f"'{value}'" if re.search(r"[\s#'\"$]", value) else value


HEADER = "| variable | default | meaning |\n|---|---|---|"


def main() -> None:
    if sys.argv[1:] == ["--env-example"]:
        print(env_example(), end="")
        return
    for title, prefix, found in sections():
        print(f"\n### {title}\n")
        print(HEADER)
        print("\n".join(rows_of(prefix, found)))


def rows_of(prefix: str, found: list[tuple[str, str, str]]) -> list[str]:
    return [
        f"| `{prefix}{name}` | `{default}` | {meaning.replace('|', chr(92) + '|')} |"
        for name, default, meaning in found
    ]


if __name__ == "__main__":
    main()
