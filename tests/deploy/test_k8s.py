"""deploy/k8s: every manifest validated offline against the schema of its kind, the
kustomizations complete, the rules of the house checked on what they render, and checkov run
on the production render (its one skipped check justified in deploy/k8s/.checkov.yaml).

Schemas: built-in kinds from kubernetes-validate (strict: unknown fields fail); Gateway API,
Prometheus Operator and KEDA resources from the @kubernetes-models packages (their CRDs
compiled; tests/deploy/k8s-models, run with node); CloudNativePG and RabbitMQ resources from
the minimal hand-written schemas in tests/deploy/crd-schemas (no registry here ships theirs).
A kind with none of these fails the test.

Services, ports, prefixes and queues are checked against deploy/platform.toml: the pods listen on
their services' defaults, which the layout states.
"""

import importlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from platform_layout import LAYOUT, ServiceLayout

from servicekit._settings import unknown_variables

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = [K8S / "base", K8S / "overlays" / "production"]
K8S_VERSION = kubernetes_validate.latest_version()
CRD_SCHEMAS = Path(__file__).parent / "crd-schemas"
MODELS_DIR = Path(__file__).parent / "k8s-models"
#: Custom resources the @kubernetes-models packages validate (validate.mjs lists the same).
MODEL_KINDS = {
    "gateway.networking.k8s.io/v1": {"Gateway", "HTTPRoute"},
    "keda.sh/v1alpha1": {"ScaledObject", "TriggerAuthentication"},
    "monitoring.coreos.com/v1": {"PodMonitor", "ServiceMonitor"},
}
CHECKOV = "checkov==3.3.30"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> list[Path]:
    return sorted(
        p
        for p in K8S.rglob("*.yaml")
        if p.name != "kustomization.yaml" and not p.name.startswith(".")
    )


def _crd_schema(doc: dict[str, Any]) -> Path:
    return CRD_SCHEMAS / f"{doc['apiVersion'].replace('/', '_')}_{doc['kind']}.json"


def _validate(doc: dict[str, Any]) -> None:
    """Built-in kinds and hand-written CRD schemas here; model kinds in the node test."""
    if doc["kind"] in MODEL_KINDS.get(doc["apiVersion"], set()):
        return
    schema = _crd_schema(doc)
    if schema.exists():
        jsonschema.validate(doc, json.loads(schema.read_text()))
        return
    assert "." not in doc["apiVersion"].split("/")[0] or doc["apiVersion"].endswith(".k8s.io/v1"), (
        f"no schema for {doc['apiVersion']} {doc['kind']}: add one to {CRD_SCHEMAS}"
    )
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _validate_with_models(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (.ci/run installs it)")
    assert (MODELS_DIR / "node_modules" / "@kubernetes-models").is_dir(), (
        "`npm ci` in tests/deploy/k8s-models (make test does it)"
    )
    result = subprocess.run(
        [node, "validate.mjs"],
        cwd=MODELS_DIR,
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("path", _manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_passes_schema_validation(path: Path) -> None:
    docs = _docs(path)
    assert docs
    for doc in docs:
        _validate(doc)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_kustomization_lists_existing_files_and_every_manifest(directory: Path) -> None:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    resources = kustomization["resources"]

    for resource in resources:
        assert (directory / resource).exists(), resource
    local = {
        p.name
        for p in directory.glob("*.yaml")
        if p.name != "kustomization.yaml" and not p.name.startswith(".")
    }
    assert local == {r for r in resources if not r.startswith("..")}


def _render(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    kustomize = shutil.which("kustomize")
    if kustomize:
        command = [kustomize, "build", str(directory)]
    elif kubectl:
        command = [kubectl, "kustomize", str(directory)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed")
    rendered = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


@pytest.fixture(scope="module", params=KUSTOMIZATIONS, ids=lambda p: p.name)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    directory: Path = request.param
    return _render(directory)


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_rendered_output_is_valid(rendered: list[dict[str, Any]]) -> None:
    for doc in rendered:
        _validate(doc)
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "recipe-platform", doc["metadata"]


def test_custom_resources_pass_their_projects_schemas(rendered: list[dict[str, Any]]) -> None:
    results = _validate_with_models(rendered)

    checked = {(r["kind"], r["name"]) for r in results if r["checked"]}
    expected = {
        (d["kind"], d["metadata"]["name"])
        for d in rendered
        if d["kind"] in MODEL_KINDS.get(d["apiVersion"], set())
    }
    assert checked == expected
    assert [r for r in results if r["error"]] == []


def test_a_wrong_custom_resource_is_refused() -> None:
    """The validators can fail: a route with a path type the Gateway API does not have, a
    Pooler with a field CloudNativePG's does not have."""
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "bad"},
        "spec": {"rules": [{"matches": [{"path": {"type": "Glob", "value": "/api"}}]}]},
    }
    (result,) = _validate_with_models([route])
    assert result["checked"] and "allowed values" in result["error"]
    pooler = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Pooler",
        "metadata": {"name": "bad"},
        "spec": {"cluster": {"name": "x"}, "pgbouncer": {"poolmode": "session"}},
    }
    with pytest.raises(jsonschema.ValidationError):
        _validate(pooler)


def test_each_service_has_deployments_probes_resources_and_budgets(
    rendered: list[dict[str, Any]],
) -> None:
    deployments = _by_kind(rendered, "Deployment")
    budgets = _by_kind(rendered, "PodDisruptionBudget")
    services = _by_kind(rendered, "Service")
    for service in LAYOUT.services:
        name = service.name
        for component in service.processes:
            deployment = deployments[f"{name}-{component}"]
            pod = deployment["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            assert container["command"] == [name, component]
            (port,) = container["ports"]
            assert port == {
                "name": _port_name(component),
                "containerPort": _port(service, component),
            }
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                assert container[probe]["httpGet"]["port"] == port["name"], (name, probe)
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["resources"]["requests"] and container["resources"]["limits"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert [c["command"] for c in pod["initContainers"]] == [[name, "migrate"]]
            assert f"{name}-{component}" in budgets
        if service.has_api:
            assert services[f"{name}-api"]["spec"]["ports"][0]["port"] == service.api_port
    assert set(deployments) == {f"{s.name}-{p}" for s in LAYOUT.services for p in s.processes}


def _port_name(process: str) -> str:
    return "http" if process == "api" else "health"


def _port(service: ServiceLayout, process: str) -> int:
    return service.port_of(process)


def _api_url(name: str) -> str:
    """A service's API inside the cluster: its Service, on the layout's port."""
    return f"http://{name}-api:{LAYOUT.service(name).api_port}"


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    pod = deployment["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def test_secrets_are_files_never_environment_variables(rendered: list[dict[str, Any]]) -> None:
    assert not _by_kind(rendered, "Secret")
    for name, deployment in _by_kind(rendered, "Deployment").items():
        service = name.split("-")[0]
        prefix = service.upper() + "_"
        pod = deployment["spec"]["template"]["spec"]
        for container in _containers(deployment):
            # Values from the pod's own resources (the API process count) are fine; secrets not.
            assert all(
                "secretKeyRef" not in var.get("valueFrom", {}) for var in container.get("env", [])
            ), name
            assert all("secretRef" not in source for source in container.get("envFrom", []))
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert mounts["/run/secrets/app"]["readOnly"] is True
        (volume,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
        files = {
            item["path"]: (source["secret"]["name"], item["key"])
            for source in volume["projected"]["sources"]
            for item in source["secret"].get("items", [])
        }
        assert files[f"{prefix}DATABASE_PASSWORD"] == (f"{service}-db-app", "password")
        assert files[f"{prefix}AMQP_USERNAME"] == ("rabbitmq-default-user", "username")
        assert files[f"{prefix}AMQP_PASSWORD"] == ("rabbitmq-default-user", "password")


def test_pods_get_no_service_account_token_and_every_container_has_limits(
    rendered: list[dict[str, Any]],
) -> None:
    for name, deployment in _by_kind(rendered, "Deployment").items():
        assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
        for container in _containers(deployment):
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name


def test_network_policies_deny_by_default_and_open_what_the_services_need(
    rendered: list[dict[str, Any]],
) -> None:
    policies = _by_kind(rendered, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and deny["ingress"] == [] and deny["egress"] == []
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    for service in LAYOUT.apis:
        for rule in policies[f"{service.name}-api"]["spec"]["ingress"]:
            assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    (scrapes,) = policies["workers"]["spec"]["ingress"]
    assert scrapes["ports"] == [{"protocol": "TCP", "port": "health"}]
    # Egress to another service names its port: the number the layout gives.
    (to_auth,) = policies["token-verifiers"]["spec"]["egress"]
    assert to_auth["ports"] == [{"protocol": "TCP", "port": LAYOUT.service("auth").api_port}]
    verifiers = policies["token-verifiers"]["spec"]["podSelector"]["matchExpressions"]
    assert verifiers[0]["values"] == [s.name for s in LAYOUT.services if s.verifies_tokens]
    (to_recipes, _) = policies["media-worker"]["spec"]["egress"]
    assert to_recipes["ports"] == [{"protocol": "TCP", "port": LAYOUT.service("recipes").api_port}]
    egress = policies["platform-egress"]["spec"]["egress"]
    assert {rule["ports"][0]["port"] for rule in egress} == {5432, 5672, 4318}


def test_metrics_are_scraped_through_the_prometheus_operator(
    rendered: list[dict[str, Any]],
) -> None:
    (monitor,) = _by_kind(rendered, "ServiceMonitor").values()
    assert monitor["spec"]["endpoints"][0] == {
        "port": "http",
        "path": "/metrics",
        "interval": "30s",
    }
    for deployment in _by_kind(rendered, "Deployment").values():
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        assert not any(key.startswith("prometheus.io/") for key in annotations)


def test_each_service_reaches_its_database_through_a_pooler_with_nightly_backups() -> None:
    docs = _render(K8S / "overlays" / "production")
    poolers = _by_kind(docs, "Pooler")
    backups = {d["spec"]["cluster"]["name"]: d for d in docs if d["kind"] == "ScheduledBackup"}
    stores = _by_kind(docs, "ObjectStore")
    configs = _by_kind(docs, "ConfigMap")
    for name, cluster in {d["metadata"]["name"]: d for d in docs if d["kind"] == "Cluster"}.items():
        service = name.removesuffix("-db")
        url = configs[f"{service}-config"]["data"][f"{service.upper()}_DATABASE_URL"]
        pooler = poolers[f"{name}-pooler-rw"]
        assert url == f"postgresql+psycopg://{service}@{name}-pooler-rw:5432/{service}"
        assert pooler["spec"]["cluster"]["name"] == name and pooler["spec"]["type"] == "rw"
        # The outbox relay LISTENs: only session pooling keeps a connection's LISTEN.
        assert pooler["spec"]["pgbouncer"]["poolMode"] == "session"
        (plugin,) = cluster["spec"]["plugins"]
        assert plugin["isWALArchiver"] is True
        assert plugin["parameters"]["barmanObjectName"] in stores
        assert backups[name]["spec"]["method"] == "plugin"


def test_checkov_finds_nothing_in_the_production_render(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv is not None
    rendered = tmp_path / "production.yaml"
    rendered.write_text(yaml.safe_dump_all(_render(K8S / "overlays" / "production")))
    result = subprocess.run(
        [
            uv,
            "tool",
            "run",
            "--from",
            CHECKOV,
            "checkov",
            "--skip-download",
            "--config-file",
            str(K8S / ".checkov.yaml"),
            "-f",
            str(rendered),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "UV_PYTHON": "3.11"},
    )
    report = json.loads(result.stdout)
    summary = (report[0] if isinstance(report, list) else report)["summary"]
    assert summary["failed"] == 0 and summary["parsing_errors"] == 0, result.stdout[-5000:]
    assert summary["passed"] > 100, summary
    assert result.returncode == 0, result.stderr[-3000:]


def test_each_api_runs_one_process_per_requested_core(rendered: list[dict[str, Any]]) -> None:
    deployments = _by_kind(rendered, "Deployment")
    for service in LAYOUT.apis:
        name = service.name
        (container,) = deployments[f"{name}-api"]["spec"]["template"]["spec"]["containers"]
        env = {v["name"]: v for v in container["env"]}
        processes = env[f"{service.env_prefix}API_PROCESSES"]["valueFrom"]["resourceFieldRef"]
        assert processes == {"containerName": "api", "resource": "requests.cpu", "divisor": "1"}
        assert "cpu" in container["resources"]["requests"]


def test_the_media_worker_scales_on_its_queue(rendered: list[dict[str, Any]]) -> None:
    scaled = _by_kind(rendered, "ScaledObject")["media-worker"]

    assert scaled["spec"]["scaleTargetRef"]["name"] == "media-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == LAYOUT.service("media").queue
    assert "media-worker" not in _by_kind(rendered, "HorizontalPodAutoscaler")


def test_the_gateway_routes_the_public_prefixes_only(rendered: list[dict[str, Any]]) -> None:
    assert not _by_kind(rendered, "Ingress")
    (gateway,) = _by_kind(rendered, "Gateway").values()
    paths = {}
    for route in _by_kind(rendered, "HTTPRoute").values():
        assert route["spec"]["parentRefs"] == [{"name": gateway["metadata"]["name"]}]
        for rule in route["spec"]["rules"]:
            (backend,) = rule["backendRefs"]
            for match in rule["matches"]:
                assert match["path"]["type"] == "PathPrefix"
                paths[match["path"]["value"]] = (backend["name"], backend["port"])

    api = {s.name: (f"{s.name}-api", s.api_port) for s in LAYOUT.apis}
    assert paths == {
        "/api/auth/": api["auth"],
        "/api/recipes": api["recipes"],
        "/api/notifications/": api["notifier"],
    }


def test_production_runs_rabbitmq_as_a_cluster_and_postgres_per_service() -> None:
    docs = _render(K8S / "overlays" / "production")
    (rabbitmq,) = [d for d in docs if d["kind"] == "RabbitmqCluster"]
    databases = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Cluster"}

    assert rabbitmq["spec"]["replicas"] == 3
    assert rabbitmq["spec"]["image"].startswith("rabbitmq:4.")
    assert "default_queue_type = quorum" in rabbitmq["spec"]["rabbitmq"]["additionalConfig"]
    assert set(databases) == {f"{name}-db" for name in LAYOUT.names}
    for name in LAYOUT.names:
        assert databases[f"{name}-db"]["spec"]["bootstrap"]["initdb"]["database"] == name
        assert databases[f"{name}-db"]["spec"]["instances"] >= 3
    apis = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-api")]
    assert all(d["spec"]["replicas"] >= 3 for d in apis)


def test_configmaps_and_secret_files_name_only_real_settings(
    rendered: list[dict[str, Any]],
) -> None:
    """Services warn about unknown variables; a typo here would only show up in a pod's log."""
    configs = _by_kind(rendered, "ConfigMap")
    for name, deployment in _by_kind(rendered, "Deployment").items():
        service = name.split("-")[0]
        settings_class = importlib.import_module(f"{service}.settings").Settings
        (volume,) = [
            v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets"
        ]
        files = {
            item["path"]: ""
            for source in volume["projected"]["sources"]
            for item in source["secret"].get("items", [])
        }
        assert unknown_variables(settings_class, configs[f"{service}-config"]["data"]) == []
        assert unknown_variables(settings_class, files) == []


def test_configmaps_name_the_other_services_on_their_layout_ports(
    rendered: list[dict[str, Any]],
) -> None:
    """No port is set (each pod listens on its service's default); URLs of others use them."""
    configs = _by_kind(rendered, "ConfigMap")
    jwks = f"{_api_url('auth')}/api/auth/.well-known/jwks.json"
    for service in LAYOUT.services:
        data = configs[f"{service.name}-config"]["data"]
        assert all(key.startswith(service.env_prefix) for key in data), service.name
        assert not {f"{service.env_prefix}API_PORT", f"{service.env_prefix}HEALTH_PORT"} & set(data)
        assert data.get(f"{service.env_prefix}JWKS_URL") == (
            jwks if service.verifies_tokens else None
        ), service.name
    assert configs["recipes-config"]["data"]["RECIPES_INTERNAL_BASE_URL"] == _api_url("recipes")
    assert configs["media-config"]["data"]["MEDIA_RECIPES_INTERNAL_URL"] == _api_url("recipes")
