"""The platform's layout (deploy/platform.toml) as typed values: services, prefixes, queues,
processes and ports. The file's header says who reads it and how the services' own defaults
relate to it.

Standard library only, so that scripts and the tests can import it without the services:

    uv run python deploy/local/platform_layout.py names   # the service names, one a line
"""

import sys
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

LAYOUT_FILE = Path(__file__).resolve().parents[1] / "platform.toml"


@dataclass(frozen=True)
class ServiceLayout:
    name: str
    #: Prefix of every setting of the service, e.g. ``RECIPES_``.
    env_prefix: str
    #: The queue its worker consumes; None when the worker only relays its outbox.
    queue: str | None
    #: Long-running commands, one process each: ``api``, ``worker``.
    processes: tuple[str, ...]
    #: One-off commands: ``migrate`` and the service's own.
    commands: tuple[str, ...]
    #: Ports before the one-machine runner's offset; the services' own defaults.
    api_port: int | None
    health_port: int
    #: Checks access tokens against the auth service's key set (has ``<PREFIX>JWKS_URL``).
    verifies_tokens: bool

    @property
    def has_api(self) -> bool:
        return self.api_port is not None

    def port_of(self, process: str) -> int:
        """The port a process answers ``/readyz`` and ``/metrics`` on."""
        if process == "api":
            assert self.api_port is not None, f"{self.name} has no API"
            return self.api_port
        return self.health_port


@dataclass(frozen=True)
class Layout:
    services: tuple[ServiceLayout, ...]
    gateway_port: int

    def service(self, name: str) -> ServiceLayout:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(f"no service {name!r} in {LAYOUT_FILE.name}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services)

    @property
    def apis(self) -> tuple[ServiceLayout, ...]:
        """The services with an API, which the gateway routes to."""
        return tuple(s for s in self.services if s.has_api)

    @property
    def consumers(self) -> tuple[ServiceLayout, ...]:
        """The services whose worker consumes a queue."""
        return tuple(s for s in self.services if s.queue is not None)

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the platform listens on, before the runner's offset."""
        apis = [s.api_port for s in self.services if s.api_port is not None]
        return (*apis, self.gateway_port, *(s.health_port for s in self.services))


def _service(table: dict[str, Any]) -> ServiceLayout:
    # A misspelt optional key (``api_prot``) would otherwise read as "no API".
    unknown = set(table) - {f.name for f in fields(ServiceLayout)}
    if unknown:
        raise ValueError(
            f"{LAYOUT_FILE.name}: unknown keys {sorted(unknown)} in {table.get('name')}"
        )
    return ServiceLayout(
        name=table["name"],
        env_prefix=table["env_prefix"],
        queue=table.get("queue"),
        processes=tuple(table["processes"]),
        commands=tuple(table["commands"]),
        api_port=table.get("api_port"),
        health_port=table["health_port"],
        verifies_tokens=table["verifies_tokens"],
    )


def load(path: Path = LAYOUT_FILE) -> Layout:
    with path.open("rb") as file:
        data = tomllib.load(file)
    return Layout(
        services=tuple(_service(table) for table in data["services"]),
        gateway_port=data["gateway"]["port"],
    )


LAYOUT = load()


def main(arguments: list[str]) -> None:
    if arguments != ["names"]:
        raise SystemExit("usage: platform_layout.py names")
    print("\n".join(LAYOUT.names))


if __name__ == "__main__":
    main(sys.argv[1:])
