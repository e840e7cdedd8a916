"""The Kubernetes manifests are valid for recent Kubernetes versions (kubernetes-validate ships
the schemas, offline) and say what the service needs: probes on the app's health routes, a
hardened pod, resources, settings the app knows, and a Service and autoscaler that find it."""

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from app.settings import Settings
from tests.deploy.files import (
    APP_UID,
    CONTAINER_PORT,
    GRPC_PORT,
    KUBERNETES_DIR,
    WORST_MB,
    known_setting_variables,
    load_yaml_documents,
    quantity_bytes,
)

# The newest schema kubernetes-validate ships, and an older one that clusters still run.
VERSIONS = [kubernetes_validate.latest_version(), "1.30.0"]


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    found = [
        (path, document)
        for path in sorted(KUBERNETES_DIR.glob("*.yaml"))
        for document in load_yaml_documents(path)
    ]
    assert found, f"no manifests in {KUBERNETES_DIR}"
    return found


def resource(kind: str) -> dict[str, Any]:
    matching = [document for _, document in manifests() if document["kind"] == kind]
    assert len(matching) == 1, f"expected one {kind}, found {len(matching)}"
    return matching[0]


def container() -> dict[str, Any]:
    containers = resource("Deployment")["spec"]["template"]["spec"]["containers"]
    # One uvicorn process per container, one container per pod: scaling is by replicas.
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly(version: str) -> None:
    for path, document in manifests():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name} ({document['kind']}) on Kubernetes {version}: {exc}")


def test_validation_rejects_a_misspelt_field() -> None:
    # Proves the strict check above has teeth: a typo in the security context must not pass.
    deployment = copy.deepcopy(resource("Deployment"))
    security = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    security["readOnlyRootFilesytem"] = security.pop("readOnlyRootFilesystem")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_the_set_is_complete() -> None:
    kinds = {document["kind"] for _, document in manifests()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= kinds
    assert resource("HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"


def test_probes_use_the_health_routes_on_the_served_port() -> None:
    spec = container()
    assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in spec:
            assert ports[spec[probe]["httpGet"]["port"]] == CONTAINER_PORT, probe


def test_a_stopping_pod_outlives_its_endpoints_and_its_drain() -> None:
    """preStop keeps the pod serving while endpoints update; the grace period covers the pause,
    the service's drain and its longest run, so Kubernetes never kills it mid-answer."""
    pause = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause >= 3
    grace = resource("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    defaults = Settings()
    assert grace > pause + defaults.drain_seconds + defaults.max_run_seconds


def test_pod_is_hardened() -> None:
    pod = resource("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == APP_UID
    security = container()["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]


def test_read_only_root_has_a_writable_tmp() -> None:
    pod = resource("Deployment")["spec"]["template"]["spec"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container()["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_resources_have_requests_and_limits() -> None:
    resources = container()["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind
    # The worst the defaults admit at once in a worker, and half as much again: the pod is not
    # killed for what it admits (one worker at the limit of one CPU).
    assert resources["limits"]["cpu"] == "1"
    assert quantity_bytes(resources["limits"]["memory"]) >= 1.5 * WORST_MB * 10**6


def test_settings_are_variables_the_app_reads() -> None:
    configmap = resource("ConfigMap")
    env_from = [source["configMapRef"]["name"] for source in container()["envFrom"]]
    assert configmap["metadata"]["name"] in env_from
    names = set(configmap["data"]) | {variable["name"] for variable in container()["env"]}
    counter_names = {name for name in names if name.startswith("COUNTER_")}
    assert counter_names, "no COUNTER_* settings"
    # A misspelt variable would be ignored silently by the app: catch it here.
    assert counter_names <= known_setting_variables(), counter_names - known_setting_variables()
    env = {item["name"]: item["value"] for item in container()["env"] if "value" in item}
    assert env["COUNTER_PORT"] == str(CONTAINER_PORT)


def test_one_worker_per_cpu_of_the_container_limit() -> None:
    """COUNTER_WORKERS comes from the container's own CPU limit, in whole CPUs: raising the
    limit adds workers, and a limit of one CPU runs one process, as before workers."""
    (workers,) = [item for item in container()["env"] if item["name"] == "COUNTER_WORKERS"]
    field = workers["valueFrom"]["resourceFieldRef"]
    assert field == {"containerName": container()["name"], "resource": "limits.cpu", "divisor": "1"}
    assert container()["resources"]["limits"]["cpu"] == "1"


def test_service_and_autoscaler_find_the_deployment() -> None:
    deployment = resource("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = resource("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    named_ports = {port["name"]: port["containerPort"] for port in container()["ports"]}
    served = {
        port["targetPort"]: named_ports[port["targetPort"]] for port in service["spec"]["ports"]
    }
    assert served == {"http": CONTAINER_PORT, "grpc": GRPC_PORT}
    target = resource("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    # The autoscaler owns the replica count; a fixed one would be reset on every apply.
    assert "replicas" not in deployment["spec"]
