"""docker-compose.yml runs the image on one host, hardened like the Kubernetes Deployment.
Docker Compose itself validates the file where it is installed."""

import shutil
import subprocess
from typing import Any

import pytest

from tests.deploy.files import (
    COMPOSE_FILE,
    CONTAINER_PORT,
    GRPC_PORT,
    known_setting_variables,
    load_yaml_documents,
)


def service() -> dict[str, Any]:
    (document,) = load_yaml_documents(COMPOSE_FILE)
    services = document["services"]
    assert len(services) == 1, list(services)
    result: dict[str, Any] = next(iter(services.values()))
    return result


def compose_command() -> list[str] | None:
    """`docker compose` (the plugin) or `docker-compose` (standalone), whichever works."""
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_compose_accepts_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    result = subprocess.run(
        [*command, "--file", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_builds_from_the_repository_with_an_overridable_base() -> None:
    build = service()["build"]
    assert build["context"] == "."
    assert "BASE_IMAGE" in build["args"]


def test_publishes_the_served_port() -> None:
    targets = [str(port).rsplit(":", 1)[-1] for port in service()["ports"]]
    assert targets == [str(CONTAINER_PORT), str(GRPC_PORT)]


def test_is_hardened_like_the_kubernetes_deployment() -> None:
    spec = service()
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in spec["security_opt"]
    assert any(str(mount).startswith("/tmp") for mount in spec["tmpfs"])


def test_settings_are_variables_the_app_reads() -> None:
    names = set(service()["environment"])
    assert names, "no settings"
    assert names <= known_setting_variables(), names - known_setting_variables()
