"""deploy/k8s: every manifest validated offline against the Kubernetes schemas (strict), the
kustomizations complete, and the rules of the house checked on what they render.

Custom resources (RabbitmqCluster, CloudNativePG Cluster, KEDA ScaledObject) have no schema in
kubernetes-validate: they are parsed and their essentials checked here instead.
"""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = [K8S / "base", K8S / "overlays" / "production"]
CUSTOM_KINDS = {"RabbitmqCluster", "Cluster", "ScaledObject", "TriggerAuthentication"}
SERVICES = {"auth": 8001, "recipes": 8002, "notifier": 8003, "media": None, "backup": None}
K8S_VERSION = kubernetes_validate.latest_version()


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def _validate(doc: dict[str, Any]) -> None:
    if doc["kind"] in CUSTOM_KINDS:
        assert doc["apiVersion"] and doc["metadata"]["name"] and doc["spec"]
        return
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


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
    local = {p.name for p in directory.glob("*.yaml") if p.name != "kustomization.yaml"}
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


def test_each_service_has_deployments_probes_resources_and_budgets(
    rendered: list[dict[str, Any]],
) -> None:
    deployments = _by_kind(rendered, "Deployment")
    budgets = _by_kind(rendered, "PodDisruptionBudget")
    services = _by_kind(rendered, "Service")
    for name, api_port in SERVICES.items():
        components = ["api", "worker"] if api_port else ["worker"]
        for component in components:
            deployment = deployments[f"{name}-{component}"]
            pod = deployment["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            assert container["command"] == [name, component]
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["resources"]["requests"] and container["resources"]["limits"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert [c["command"] for c in pod["initContainers"]] == [[name, "migrate"]]
            assert f"{name}-{component}" in budgets
        if api_port:
            assert services[f"{name}-api"]["spec"]["ports"][0]["port"] == api_port


def test_no_secret_is_committed_and_secrets_are_referenced(
    rendered: list[dict[str, Any]],
) -> None:
    assert not _by_kind(rendered, "Secret")
    for deployment in _by_kind(rendered, "Deployment").values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        for var in container["env"]:
            # URLs with credentials are put together from secret references, never written.
            if "@" in var.get("value", ""):
                assert "$(DB_PASSWORD)" in var["value"] or "$(RABBITMQ_PASSWORD)" in var["value"]
        refs = {
            v["valueFrom"]["secretKeyRef"]["name"]
            for v in container["env"]
            if "secretKeyRef" in v.get("valueFrom", {})
        }
        assert "rabbitmq-default-user" in refs


def test_each_api_runs_one_process_per_requested_core(rendered: list[dict[str, Any]]) -> None:
    deployments = _by_kind(rendered, "Deployment")
    for name in ("auth", "recipes", "notifier"):
        (container,) = deployments[f"{name}-api"]["spec"]["template"]["spec"]["containers"]
        env = {v["name"]: v for v in container["env"]}
        processes = env[f"{name.upper()}_API_PROCESSES"]["valueFrom"]["resourceFieldRef"]
        assert processes == {"containerName": "api", "resource": "requests.cpu", "divisor": "1"}
        assert "cpu" in container["resources"]["requests"]


def test_the_media_worker_scales_on_its_queue(rendered: list[dict[str, Any]]) -> None:
    scaled = _by_kind(rendered, "ScaledObject")["media-worker"]

    assert scaled["spec"]["scaleTargetRef"]["name"] == "media-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == "media.events"
    assert "media-worker" not in _by_kind(rendered, "HorizontalPodAutoscaler")


def test_the_ingress_routes_the_public_prefixes_only(rendered: list[dict[str, Any]]) -> None:
    paths = {
        path["path"]: path["backend"]["service"]["name"]
        for ingress in _by_kind(rendered, "Ingress").values()
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }

    assert paths == {
        "/api/auth/": "auth-api",
        "/api/auth/token/": "auth-api",
        "/api/recipes": "recipes-api",
        "/api/notifications/": "notifier-api",
    }
    limited = _by_kind(rendered, "Ingress")["gateway-auth-token"]["metadata"]["annotations"]
    assert limited["nginx.ingress.kubernetes.io/limit-rps"] == "5"


def test_production_runs_rabbitmq_as_a_cluster_and_postgres_per_service() -> None:
    docs = _render(K8S / "overlays" / "production")
    (rabbitmq,) = [d for d in docs if d["kind"] == "RabbitmqCluster"]
    databases = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Cluster"}

    assert rabbitmq["spec"]["replicas"] == 3
    assert "default_queue_type = quorum" in rabbitmq["spec"]["rabbitmq"]["additionalConfig"]
    assert set(databases) == {f"{name}-db" for name in SERVICES}
    for name in SERVICES:
        assert databases[f"{name}-db"]["spec"]["bootstrap"]["initdb"]["database"] == name
        assert databases[f"{name}-db"]["spec"]["instances"] >= 3
    apis = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-api")]
    assert all(d["spec"]["replicas"] >= 3 for d in apis)
