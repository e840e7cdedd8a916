"""deploy/kserve/inferenceservice.yaml says what the service needs: probes on routes the app
really serves, the port the image exposes, the image tag of the version the app reports, a
hardened pod, resources, and a stop that drains. That it is a valid InferenceService is
tests/deploy/test_kserve_schema.py's.
"""

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.deploy.files import (
    APP_UID,
    CONTAINER_PORT,
    DOCKERFILE,
    REPO,
    WORST_MB,
    known_setting_variables,
    quantity_bytes,
)
from tests.deploy.kserve_crd import container, env, predictor


def test_one_worker_per_cpu_of_the_container_limit() -> None:
    """COUNTER_WORKERS comes from the predictor's own CPU limit, in whole CPUs."""
    (workers,) = [item for item in container()["env"] if item["name"] == "COUNTER_WORKERS"]
    field = workers["valueFrom"]["resourceFieldRef"]
    assert field == {"containerName": container()["name"], "resource": "limits.cpu", "divisor": "1"}


def test_kserve_finds_the_predictor_and_its_protocol() -> None:
    assert container()["name"] == "kserve-container"
    # The only way to give a custom predictor's protocol (KServe accepts v1 or v2).
    assert env()["PROTOCOL"] == "v2"


def test_settings_are_variables_the_app_reads() -> None:
    counter_names = {name for name in env() if name.startswith("COUNTER_")}
    assert counter_names <= known_setting_variables(), counter_names - known_setting_variables()
    assert env()["COUNTER_HOST"] == "0.0.0.0"
    assert env()["COUNTER_PORT"] == str(CONTAINER_PORT)


def test_port_is_the_one_the_image_exposes() -> None:
    exposed = re.findall(r"^EXPOSE\s+(\d+)", DOCKERFILE.read_text(), re.MULTILINE)
    # KServe routes one port per container: the HTTP one (gRPC, 8001, is the image's other).
    assert exposed[0] == str(CONTAINER_PORT)
    assert [port["containerPort"] for port in container()["ports"]] == [CONTAINER_PORT]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container()[probe]["httpGet"]["port"] == CONTAINER_PORT, probe


def test_image_tag_is_the_version_the_app_reports() -> None:
    name, tag = container()["image"].rsplit(":", 1)
    assert name.endswith("rnn-counter")
    assert tag == create_app().version  # what GET /v2 and the OpenAPI document say


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[TestClient, FastAPI]]:
    """The app, started (models loaded, re-proved and warmed up), and a client of it."""
    app = create_app(Settings(access_log=False, walked_certificates="skip"))
    with TestClient(app) as client:
        yield client, app


def test_probes_point_at_paths_the_service_serves(served: tuple[TestClient, FastAPI]) -> None:
    client, _ = served
    box = container()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = box[probe]["httpGet"]["path"]
        response = client.get(path)
        assert response.status_code == 200, (probe, path, response.text)
    assert client.get(box["readinessProbe"]["httpGet"]["path"]).json() == {"ready": True}
    assert client.get("/v2/health/nonexistent").status_code == 404  # a wrong path would fail


def test_readiness_fails_while_draining_and_liveness_does_not(
    served: tuple[TestClient, FastAPI],
) -> None:
    client, app = served
    box = container()
    service = app.state.service
    service.ready, service.draining = False, True  # what SIGTERM does (app/http/server.py)
    try:
        assert client.get(box["readinessProbe"]["httpGet"]["path"]).status_code == 503
        assert client.get(box["livenessProbe"]["httpGet"]["path"]).status_code == 200
    finally:
        service.ready, service.draining = True, False


def test_pod_is_hardened() -> None:
    pod = predictor()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == APP_UID
    security = container()["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container()["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in predictor()["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def _cpu(quantity: str | int) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_resources_have_requests_and_limits() -> None:
    resources = container()["resources"]
    for kind in ("requests", "limits"):
        # Map keys are free in the schema: a misspelt resource name would pass it.
        assert set(resources[kind]) == {"cpu", "memory"}, kind
    assert _cpu(resources["requests"]["cpu"]) == pytest.approx(0.25)
    assert _cpu(resources["limits"]["cpu"]) == pytest.approx(1.0)
    assert quantity_bytes(resources["requests"]["memory"]) == 256 * 2**20
    # The worst the defaults admit at once peaked at WORST_MB (bench.load's memory scenario):
    # the limit leaves it room, so the pod is not killed for what it admits.
    assert quantity_bytes(resources["limits"]["memory"]) >= 1.5 * WORST_MB * 10**6


def test_stop_drains_within_the_grace_period() -> None:
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert len(command) == 2
    pre_stop = float(command[1])
    assert 2 <= pre_stop <= 15, "long enough for endpoints to update, short of the grace period"
    settings = Settings()
    drain = float(env().get("COUNTER_DRAIN_SECONDS", settings.drain_seconds))
    # uvicorn's graceful stop waits for in-flight runs up to max_run_seconds + 1
    # (app/http/server.py)
    graceful = settings.max_run_seconds + 1
    assert pre_stop + drain + graceful < predictor()["terminationGracePeriodSeconds"]


def test_documented_in_the_deploy_readme() -> None:
    text = (REPO / "deploy" / "README.md").read_text()
    assert "deploy/kserve/inferenceservice.yaml" in text
    assert "/v2/models/counter/infer" in text
