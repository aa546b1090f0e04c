"""deploy/k8s/ renders with the real kustomize (kubectl's) and every object it makes is
valid against the Kubernetes API schemas (kubernetes-validate; its schemas ship in the
wheel). No cluster here: what the pods would run is checked against the code instead."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from service.cli import _parser
from service.config import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "production")
# The oldest Kubernetes the manifests promise to work on, and the newest schemas shipped.
VERSIONS = ("1.29", "1.37")
KUBECTL = os.environ.get("TRAINSERVE_KUBECTL", "kubectl")


def render(overlay: str) -> list[dict]:
    kubectl = shutil.which(KUBECTL)
    if kubectl is None:
        pytest.fail(
            f"{KUBECTL} not found: the manifests are rendered with kubectl's built-in "
            "kustomize (`make kubectl` says how to get it; TRAINSERVE_KUBECTL=/path/to/kubectl)"
        )
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    return request.param, render(request.param)


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(workload: dict) -> list[dict]:
    spec = workload["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def test_every_object_is_valid_against_the_kubernetes_schemas(rendered):
    _, docs = rendered
    assert len(docs) >= 9
    for doc in docs:
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                pytest.fail(
                    f"{doc['kind']}/{doc['metadata']['name']} ({version}): {where}: {exc.message}"
                )


def test_every_base_file_is_valid_on_its_own():
    for path in sorted((K8S / "base").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] != "Kustomization":
                kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)


def test_the_validator_rejects_a_misspelt_field():
    docs = render("dev")
    api = by_kind(docs, "Deployment")["trainserve-api"]
    api["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(api, VERSIONS[-1], strict=True)


def test_the_parts_of_the_deployment_are_there(rendered):
    overlay, docs = rendered
    deployments = by_kind(docs, "Deployment")
    assert {
        "trainserve-api",
        "trainserve-worker",
        "trainserve-worker-gpu",
        "trainserve-upkeep",
    } <= set(deployments)
    assert "trainserve-migrate" in by_kind(docs, "Job")
    assert "trainserve-config" in by_kind(docs, "ConfigMap")
    # The Secret is generated in dev; in production it is created by hand (see the
    # overlay's kustomization.yaml) and every pod refers to it by its plain name.
    secrets = by_kind(docs, "Secret")
    if overlay == "dev":
        assert len(secrets) == 1
    else:
        assert secrets == {}


def test_the_api_has_probes_a_service_and_an_hpa_on_cpu(rendered):
    _, docs = rendered
    api = by_kind(docs, "Deployment")["trainserve-api"]
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]["cpu"]  # an HPA on CPU needs a request
    port = container["ports"][0]
    assert f"--port {port['containerPort']}" in " ".join(container["command"])

    service = by_kind(docs, "Service")["trainserve-api"]
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]

    hpa = by_kind(docs, "HorizontalPodAutoscaler")["trainserve-api"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "trainserve-api",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_cpu_and_gpu_workers(rendered):
    _, docs = rendered
    deployments = by_kind(docs, "Deployment")
    for name, device in (("trainserve-worker", "cpu"), ("trainserve-worker-gpu", "cuda")):
        spec = deployments[name]["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["TRAINSERVE_DEVICE"]["value"] == device
        # torch threads follow the CPU limit, not the node's cores.
        assert env["TRAINSERVE_TORCH_THREADS"]["valueFrom"]["resourceFieldRef"]["resource"] == (
            "limits.cpu"
        )
        limits = container["resources"]["limits"]
        assert ("nvidia.com/gpu" in limits) == (device == "cuda"), name
        # SIGTERM hands the running job back within seconds (the training loop checks
        # between batches at least every 5 s); the grace period leaves room for that and
        # for a large table's preparation before the first check.
        assert spec["terminationGracePeriodSeconds"] >= 30


def test_every_command_is_a_trainserve_command_that_parses(rendered):
    _, docs = rendered
    parser = _parser()
    seen = set()
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for container in containers(doc):
            command = container.get("command") or []
            if not command or command[0] != "trainserve":
                assert doc["metadata"]["name"] in ("postgres", "redis"), doc["metadata"]["name"]
                continue
            args = parser.parse_args(command[1:])
            assert hasattr(args, "run"), shlex.join(command)
            seen.add(" ".join(command[1:3]))
    assert {"db upgrade", "db wait", "upkeep"} <= seen
    assert any(s.startswith("api") for s in seen) and any(s.startswith("worker") for s in seen)


def test_every_variable_is_a_real_setting_and_every_reference_resolves(rendered):
    overlay, docs = rendered
    # Every field of Settings, and TRAINSERVE_HOME (the embedded defaults' directory).
    known = {PREFIX + f.name.upper() for f in fields(Settings)} | {PREFIX + "HOME"}
    config = by_kind(docs, "ConfigMap")["trainserve-config"]
    names = set(config["data"])
    secrets = by_kind(docs, "Secret")
    for secret in secrets.values():
        names |= set(secret.get("data", {})) | set(secret.get("stringData", {}))
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            for container in containers(doc):
                names |= {e["name"] for e in container.get("env", [])}
                for source in container.get("envFrom", []):
                    ref = source.get("configMapRef") or source.get("secretRef")
                    kind = "ConfigMap" if "configMapRef" in source else "Secret"
                    if overlay == "dev" or kind == "ConfigMap":
                        assert ref["name"] in by_kind(docs, kind), (doc["metadata"], ref)
                    else:
                        assert ref["name"] == "trainserve-secrets"
    trainserve = {n for n in names if n.startswith(PREFIX)}
    assert trainserve <= known, trainserve - known
    if overlay == "dev":
        assert {"TRAINSERVE_DATABASE_URL", "TRAINSERVE_BROKER_URL"} <= names


def test_pods_wait_for_the_migration(rendered):
    _, docs = rendered
    for name, deployment in by_kind(docs, "Deployment").items():
        if not name.startswith("trainserve-"):
            continue
        init = deployment["spec"]["template"]["spec"]["initContainers"]
        assert init[0]["command"][:3] == ["trainserve", "db", "wait"], name
    job = by_kind(docs, "Job")["trainserve-migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "trainserve",
        "db",
        "upgrade",
    ]
