"""onnxruntime's usage telemetry is off wherever the project starts it: the image, every
manifest, make, and the tests' own servers (ORT_DISABLE_TELEMETRY=1; without it onnxruntime
writes a device id and a database under ~/.cache/Microsoft/)."""

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.app.server import start_server, stop_server
from tests.deploy.files import (
    COMPOSE_FILE,
    DOCKERFILE,
    KUBERNETES_DIR,
    REPO,
    load_yaml_documents,
)

OFF = ("ORT_DISABLE_TELEMETRY", "1")


def _env_list(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value") for item in container.get("env", [])}


def test_the_image_sets_it() -> None:
    assert re.search(r"^\s+ORT_DISABLE_TELEMETRY=1\b", DOCKERFILE.read_text(), re.MULTILINE)


def test_kubernetes_sets_it_in_the_configmap_the_deployment_reads() -> None:
    (configmap,) = load_yaml_documents(KUBERNETES_DIR / "configmap.yaml")
    assert configmap["data"][OFF[0]] == OFF[1]


def test_kserve_sets_it_on_the_predictor() -> None:
    (service,) = load_yaml_documents(REPO / "deploy" / "kserve" / "inferenceservice.yaml")
    (container,) = service["spec"]["predictor"]["containers"]
    assert _env_list(container)[OFF[0]] == OFF[1]


def test_ray_serve_sets_it_in_every_replica() -> None:
    (config,) = load_yaml_documents(REPO / "deploy" / "ray" / "serve.yaml")
    for application in config["applications"]:
        assert application["runtime_env"]["env_vars"][OFF[0]] == OFF[1]


def test_compose_builds_the_image_that_sets_it() -> None:
    (compose,) = load_yaml_documents(COMPOSE_FILE)
    for service in compose["services"].values():
        assert service["build"]["context"] == "."  # the Dockerfile above
        assert OFF[0] not in (service.get("environment") or {})  # and nothing turns it back on


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")
def test_what_make_starts_runs_with_it() -> None:
    """A recipe of the project's Makefile, as `make serve` runs one, sees it set."""
    probe = "telemetry-probe:\n\t@echo $$ORT_DISABLE_TELEMETRY\n"
    env = {k: v for k, v in os.environ.items() if k != OFF[0]}
    done = subprocess.run(
        ["make", "-s", "-f", "Makefile", "-f", "-", "telemetry-probe"],
        input=probe,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == OFF[1]


@pytest.mark.server
def test_the_tests_and_their_servers_run_with_it(tmp_path: Path) -> None:
    assert os.environ.get(OFF[0]) == OFF[1]  # this process (tests/__init__.py), and so its children
    server, _ = start_server(REPO / "models", tmp_path / "server.log")
    try:
        environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
    finally:
        stop_server(server)
    assert f"{OFF[0]}={OFF[1]}".encode() in environ
