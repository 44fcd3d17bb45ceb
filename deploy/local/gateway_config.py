"""Render deploy/gateway/nginx.conf.template into a config nginx can run without privileges.

The template's placeholders are upper-case ``${NAME}``; nginx's own variables are lower case, so
they pass through. Every placeholder must get a value (a forgotten one fails here, not in nginx).
compose.yaml fills the same template with ``envsubst`` and the same names (a test checks both
agree).

    python deploy/local/gateway_config.py --run-dir DIR --log-dir DIR --media-root DIR [--port N]
"""

import argparse
import getpass
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from platform_layout import LAYOUT

TEMPLATE = Path(__file__).resolve().parents[1] / "gateway" / "nginx.conf.template"
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
#: Directories nginx writes temporary request and response bodies to, under the run dir.
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "public_cache")

#: The platform's upload limit (the recipes service refuses larger images with 413 too).
DEFAULT_UPLOAD_LIMIT = "10m"
DEFAULT_AUTH_TOKEN_RATE = "5r/s"
DEFAULT_AUTH_TOKEN_BURST = "10"
#: The public read cache's zone in the template; ``off`` instead turns the cache off.
PUBLIC_READ_ZONE = "public_reads"


def placeholders(template: str) -> set[str]:
    return set(PLACEHOLDER.findall(template))


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill every placeholder; refuse a template that asks for a value nobody gave."""
    missing = placeholders(template) - set(values)
    if missing:
        raise KeyError(f"no value for gateway placeholders: {', '.join(sorted(missing))}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def local_values(
    *,
    run_dir: Path,
    log_dir: Path,
    media_root: Path,
    port: int = LAYOUT.gateway_port,
    auth_upstream: str = f"127.0.0.1:{LAYOUT.service('auth').port_of('api')}",
    recipes_upstream: str = f"127.0.0.1:{LAYOUT.service('recipes').port_of('api')}",
    notifier_upstream: str = f"127.0.0.1:{LAYOUT.service('notifier').port_of('api')}",
    upload_limit: str = DEFAULT_UPLOAD_LIMIT,
    auth_token_rate: str = DEFAULT_AUTH_TOKEN_RATE,
    auth_token_burst: str = DEFAULT_AUTH_TOKEN_BURST,
    public_read_cache: bool = True,
) -> dict[str, str]:
    """The values for a gateway on loopback in front of services on this machine (by default
    on deploy/platform.toml's ports)."""
    return {
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "RUN_DIR": str(run_dir.resolve()),
        "ERROR_LOG": str((log_dir / "gateway-error.log").resolve()),
        "ACCESS_LOG": str((log_dir / "gateway-access.log").resolve()),
        "MEDIA_ROOT": str(media_root.resolve()),
        "AUTH_UPSTREAM": auth_upstream,
        "RECIPES_UPSTREAM": recipes_upstream,
        "NOTIFIER_UPSTREAM": notifier_upstream,
        "UPLOAD_LIMIT": upload_limit,
        "AUTH_TOKEN_RATE": auth_token_rate,
        "AUTH_TOKEN_BURST": auth_token_burst,
        "PUBLIC_READ_CACHE": PUBLIC_READ_ZONE if public_read_cache else "off",
    }


def write_config(values: Mapping[str, str], out: Path) -> Path:
    """Render the template to ``out`` and create the run dir, its temp dirs and the log dir."""
    run_dir = Path(values["RUN_DIR"])
    for name in TEMP_DIRS:
        (run_dir / name).mkdir(parents=True, exist_ok=True)
    for log in (values["ERROR_LOG"], values["ACCESS_LOG"]):
        Path(log).parent.mkdir(parents=True, exist_ok=True)
    Path(values["MEDIA_ROOT"]).mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    rendered = render(TEMPLATE.read_text(), values)
    if os.geteuid() == 0:
        # Started by root, nginx would run its workers as `nobody`, who may not read the media
        # files the services (running as this user) wrote, nor the temp dirs. Keep the user.
        rendered = f"user {getpass.getuser()};\n{rendered}"
    out.write_text(rendered)
    return out


def nginx_binary() -> str | None:
    """nginx is often in /usr/sbin, which an unprivileged PATH lacks."""
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if Path(candidate).is_file():
            return candidate
    return None


def nginx_command(config: Path, values: Mapping[str, str], *, test: bool = False) -> list[str]:
    """Run nginx on ``config`` with its prefix and early error log in the run dir."""
    binary = nginx_binary()
    if binary is None:
        raise FileNotFoundError("nginx is not installed")
    command = [binary, "-p", values["RUN_DIR"], "-e", values["ERROR_LOG"], "-c", str(config)]
    return [*command, "-t", "-q"] if test else command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--log-dir", type=Path, required=True)
    parser.add_argument("--media-root", type=Path, required=True)
    parser.add_argument("--port", type=int, default=LAYOUT.gateway_port)
    parser.add_argument("--out", type=Path, help="default: RUN_DIR/nginx.conf")
    args = parser.parse_args()
    values = local_values(
        run_dir=args.run_dir, log_dir=args.log_dir, media_root=args.media_root, port=args.port
    )
    print(write_config(values, args.out or args.run_dir / "nginx.conf"))


if __name__ == "__main__":
    main()
