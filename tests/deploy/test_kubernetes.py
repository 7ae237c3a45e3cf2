"""deploy/kubernetes: valid objects (strict schemas), a complete kustomization, and the service's
needs: probes, one scheduler, a grace period for transfers, memory for parts, KEDA on the queue."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from config import ArchiveConfig
from config.archive import load_archive_config
from config.celery import TRANSFER_QUEUE
from tests.deploy.files import KUBERNETES, kubernetes_documents, kubernetes_object, load_yaml
from worker.edge.web import paths

K8S_VERSION = "1.35.0"  # a recent release whose schemas kubernetes-validate ships
BUILT_IN_APIS = {"v1", "apps/v1", "policy/v1"}
CRDS = {("keda.sh/v1alpha1", "ScaledObject")}  # no schema shipped: checked structurally below
DOCUMENTS = kubernetes_documents()
MiB = 1024 * 1024


def pod_spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = kubernetes_object("Deployment", name)["spec"]["template"]["spec"]
    return spec


def container(name: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec(name)["containers"]
    assert len(containers) == 1
    return containers[0]


def quantity_bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity)
    assert match, f"unexpected memory quantity {quantity!r}"
    return int(match[1]) * {None: 1, "Ki": 1024, "Mi": MiB, "Gi": 1024 * MiB}[match[2]]


def configured_archive(tmp_path: Path) -> ArchiveConfig:
    path = tmp_path / "archiver.toml"
    path.write_text(kubernetes_object("ConfigMap", "archiver-config")["data"]["archiver.toml"])
    return load_archive_config(path)


CORE = [(path, doc) for path, doc in DOCUMENTS if (doc["apiVersion"], doc["kind"]) not in CRDS]


@pytest.mark.parametrize(("path", "doc"), CORE, ids=[f"{path.name}:{doc['kind']}" for path, doc in CORE])
def test_manifest_validates_against_the_kubernetes_schema(path: Path, doc: dict[str, Any]) -> None:
    """Each core object validates in strict mode (no unknown fields) against Kubernetes' own schema."""
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_only_known_custom_resources() -> None:
    """Everything is a built-in API kubernetes-validate checks, or a known CRD checked structurally here."""
    for path, doc in DOCUMENTS:
        kind = (doc["apiVersion"], doc["kind"])
        assert doc["apiVersion"] in BUILT_IN_APIS or kind in CRDS, f"{path.name}: unexpected {kind}"


def test_kustomization_lists_every_manifest() -> None:
    """kustomization.yaml lists exactly the manifest files present, and sets no namespace."""
    kustomization = load_yaml(KUBERNETES / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    files = {p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert "namespace" not in kustomization
    assert all("namespace" not in d["metadata"] for _, d in DOCUMENTS)


def test_web_runs_two_replicas_with_health_and_readiness_probes() -> None:
    """Two receivers; liveness GET /healthz and readiness GET /readyz on the port the receiver listens on."""
    assert kubernetes_object("Deployment", "archiver-web")["spec"]["replicas"] == 2
    web = container("archiver-web")
    port = web["args"][web["args"].index("--port") + 1]
    named = {p["name"]: str(p["containerPort"]) for p in web["ports"]}
    for probe, path in (("livenessProbe", paths.HEALTHZ), ("readinessProbe", paths.READYZ)):
        http = web[probe]["httpGet"]
        assert http["path"] == path
        assert str(named.get(http["port"], http["port"])) == port


def test_web_service_selects_the_web_pods() -> None:
    service = kubernetes_object("Service", "archiver-web")
    labels = kubernetes_object("Deployment", "archiver-web")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_exactly_one_scheduler_never_two_during_an_update() -> None:
    """replicas: 1 and strategy Recreate; no autoscaler and no PDB target it."""
    scheduler = kubernetes_object("Deployment", "archiver-scheduler")
    assert scheduler["spec"]["replicas"] == 1
    assert scheduler["spec"]["strategy"]["type"] == "Recreate"
    targets = {d["spec"]["scaleTargetRef"]["name"] for _, d in DOCUMENTS if d["kind"] == "ScaledObject"}
    assert "archiver-scheduler" not in targets


def test_worker_grace_period_lets_a_transfer_finish_or_hand_back() -> None:
    """The worker's terminationGracePeriodSeconds is at least 300 s (Celery's warm shutdown)."""
    assert pod_spec("archiver-worker")["terminationGracePeriodSeconds"] >= 300


def test_worker_memory_limit_holds_its_transfers(tmp_path: Path) -> None:
    """The limit covers, per transfer process, part_size × (parts_in_flight + 1) + ~80 MiB, plus Celery's
    main process, for the configured tuning and --concurrency."""
    worker = container("archiver-worker")
    concurrency = int(worker["args"][worker["args"].index("--concurrency") + 1])
    tuning = configured_archive(tmp_path).transfer
    per_process = tuning.part_size * (tuning.parts_in_flight + 1) + 80 * MiB
    needed = concurrency * per_process + 80 * MiB
    assert quantity_bytes(worker["resources"]["limits"]["memory"]) >= needed


@pytest.mark.parametrize("name", ["archiver-web", "archiver-worker", "archiver-scheduler"])
def test_pods_are_locked_down_and_sized(name: str) -> None:
    """Non-root, no privilege escalation, read-only root file system, requests and limits set; the
    configuration is mounted where ARCHIVER_CONFIG says and the Stream credentials come from the Secret."""
    spec, app = pod_spec(name), container(name)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert app["securityContext"]["allowPrivilegeEscalation"] is False
    assert app["securityContext"]["readOnlyRootFilesystem"] is True
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= app["resources"][kind].keys()
    config = next(e["value"] for e in app["env"] if e["name"] == "ARCHIVER_CONFIG")
    mount = next(m for m in app["volumeMounts"] if config.startswith(m["mountPath"] + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    config_map = kubernetes_object("ConfigMap", volume["configMap"]["name"])
    assert config.removeprefix(mount["mountPath"] + "/") in config_map["data"]
    secret_names = {s["secretRef"]["name"] for s in app["envFrom"]}
    assert {s["metadata"]["name"] for _, s in DOCUMENTS if s["kind"] == "Secret"} & secret_names


def test_configmap_holds_a_valid_configuration(tmp_path: Path) -> None:
    """archiver.toml in the ConfigMap passes the archiver's own validation."""
    assert configured_archive(tmp_path).storages


def test_secret_is_a_template_with_stream_placeholders() -> None:
    """The Secret carries STREAM_API_KEY and STREAM_API_SECRET as placeholders, never real values."""
    data = kubernetes_object("Secret", "archiver-secrets")["stringData"]
    for key in ("STREAM_API_KEY", "STREAM_API_SECRET"):
        assert data[key].startswith("REPLACE_WITH_"), key


def test_disruption_budgets_select_deployed_pods() -> None:
    """Each PodDisruptionBudget matches the pods of one Deployment, and the scheduler has none (it
    would block node drains with its single replica)."""
    budgets = [d for _, d in DOCUMENTS if d["kind"] == "PodDisruptionBudget"]
    assert budgets
    deployments = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
                   for _, d in DOCUMENTS if d["kind"] == "Deployment"}
    for budget in budgets:
        selector = budget["spec"]["selector"]["matchLabels"]
        matched = [name for name, labels in deployments.items() if selector.items() <= labels.items()]
        assert len(matched) == 1 and matched[0] != "archiver-scheduler", budget["metadata"]["name"]


def test_keda_scales_workers_on_the_celery_queue_list() -> None:
    """The ScaledObject targets the worker Deployment with a `redis` trigger on the Celery queue's list."""
    scaled = kubernetes_object("ScaledObject", "archiver-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "archiver-worker"
    assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert "replicas" not in kubernetes_object("Deployment", "archiver-worker")["spec"]  # KEDA owns it
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    metadata = trigger["metadata"]
    assert metadata["listName"] == TRANSFER_QUEUE == "archiver.transfers"
    assert int(metadata["listLength"]) > 0
    assert "address" in metadata or "addressFromEnv" in metadata or "host" in metadata
    assert all(isinstance(value, str) for value in metadata.values()), "KEDA trigger metadata values are strings"
