# One image recipe for every service of the platform. Build context: the repository root
#   docker build --build-arg SERVICE=auth -t recipe-platform/auth .
# SERVICE: auth, recipes, notifier, media or backup. BASE_IMAGE: a Debian bookworm image with
# Python 3.11 (python:3.11-slim-bookworm by default; scripts/ensure-docker makes one from Debian's
# packages where no registry is reachable). Only that service and the shared libraries go in;
# versions come from the root pyproject's constraint-dependencies (the pinned set). One image
# runs every process of the service: `<service> api` (the default where the service has an API),
# `<service> worker` and `<service> migrate` by overriding the command. The runtime stage has no
# build tools; it runs as a numeric non-root user and needs no writable path but the data
# folder (/app/var/<service>, a volume) and /tmp, so the root filesystem can be read-only.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ARG SERVICE
ARG UV_VERSION=0.13.9
# Certificates of a TLS-inspecting proxy, if any (deploy/docker/ca-certificates/README.md):
# trusted by pip and uv in this stage only.
COPY deploy/docker/ca-certificates/ /usr/local/share/ca-certificates/platform/
RUN update-ca-certificates >/dev/null
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    UV_NATIVE_TLS=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}" \
 && /opt/uv/bin/uv venv --quiet --python "$(command -v python3)" /opt/venv
WORKDIR /app
# Dependencies first, in a layer of their own: rebuilt only when a pyproject changes.
COPY pyproject.toml ./pyproject.toml
COPY libs/contracts/pyproject.toml libs/contracts/pyproject.toml
COPY libs/servicekit/pyproject.toml libs/servicekit/pyproject.toml
COPY services/${SERVICE}/pyproject.toml services/${SERVICE}/pyproject.toml
COPY deploy/docker/requirements.py /tmp/requirements.py
RUN python3 /tmp/requirements.py /tmp/requirements.txt /tmp/constraints.txt \
      libs/contracts libs/servicekit "services/${SERVICE}" \
 && VIRTUAL_ENV=/opt/venv /opt/uv/bin/uv pip install --quiet \
      --constraint /tmp/constraints.txt --requirement /tmp/requirements.txt
COPY libs/contracts libs/contracts
COPY libs/servicekit libs/servicekit
COPY services/${SERVICE} services/${SERVICE}
# Editable for the service itself: it finds its alembic.ini and migrations/ beside its source.
# --no-sources: the workspace sources of the pyprojects mean the paths given here.
RUN VIRTUAL_ENV=/opt/venv /opt/uv/bin/uv pip install --quiet --no-deps --no-build-isolation \
      --no-sources ./libs/contracts ./libs/servicekit --editable "./services/${SERVICE}"

FROM ${BASE_IMAGE} AS runtime
ARG SERVICE
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home app \
 && mkdir -p "/app/var/${SERVICE}" && chown -R 10001:10001 /app/var
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app/services/${SERVICE} /app/services/${SERVICE}
COPY deploy/docker/process.py /usr/local/lib/platform/process.py
WORKDIR /app
# Data (var/<service>) is relative to the working directory, as with `make up`: mount it.
ENV PATH=/opt/venv/bin:$PATH \
    SERVICE=${SERVICE} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
# Containers listen on every address of their own network; the API and the health port.
ENV AUTH_API_HOST=0.0.0.0 AUTH_HEALTH_HOST=0.0.0.0 \
    RECIPES_API_HOST=0.0.0.0 RECIPES_HEALTH_HOST=0.0.0.0 \
    NOTIFIER_API_HOST=0.0.0.0 NOTIFIER_HEALTH_HOST=0.0.0.0 \
    MEDIA_HEALTH_HOST=0.0.0.0 BACKUP_HEALTH_HOST=0.0.0.0
HEALTHCHECK --interval=10s --timeout=10s --start-period=120s --retries=6 \
  CMD ["python", "/usr/local/lib/platform/process.py", "check"]
# Without a command: `<service> api`, or `<service> worker` for a service without an API.
ENTRYPOINT ["python", "/usr/local/lib/platform/process.py", "run"]
