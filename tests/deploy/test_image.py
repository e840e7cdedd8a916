"""Build the image, run it as a user would (hardened like the Kubernetes pod), and use it.

Needs a Docker engine: where none answers, every test here skips and says why. The base image
is COUNTER_TEST_BASE_IMAGE if set, else the CI stand-in local/python-base if present (see
.ci/container-engine), else the Dockerfile's default (python:3.12-slim, pulled by the engine).
The image is tagged rnn-counter:test, so that a second run reuses the build cache.
"""

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from core.card import ModelCard
from core.codec import add_one
from tests.deploy.files import APP_UID, CONTAINER_PORT, MODELS_DIR, REPO

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TAG = "rnn-counter:test"
STAND_IN_BASE = "local/python-base"
BUILD_TIMEOUT_S = 900  # a cold build downloads onnxruntime and numpy from the package index
READY_TIMEOUT_S = 120


@dataclass(frozen=True)
class Running:
    """A started container: its id and the loopback URL its port 8000 is published on."""

    container_id: str
    url: str


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def base_image() -> str | None:
    """The BASE_IMAGE build argument, or None for the Dockerfile's own default."""
    chosen = os.environ.get("COUNTER_TEST_BASE_IMAGE")
    if chosen:
        return chosen
    return STAND_IN_BASE if docker("image", "inspect", STAND_IN_BASE).returncode == 0 else None


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI on PATH (CI installs one: .ci/container-engine start)")
    info = docker("info", timeout=20)
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        pytest.skip(f"no Docker engine answers ({reason}); start one: .ci/container-engine start")
    base = base_image()
    build_args = ["--build-arg", f"BASE_IMAGE={base}"] if base else []
    build = docker("build", *build_args, "--tag", TAG, str(REPO), timeout=BUILD_TIMEOUT_S)
    assert build.returncode == 0, f"docker build failed:\n{build.stdout[-3000:]}{build.stderr}"
    return TAG


def wait_until_ready(container_id: str, url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        state = docker("inspect", "--format", "{{.State.Running}}", container_id)
        if state.stdout.strip() != "true":
            logs = docker("logs", container_id)
            pytest.fail(f"the container exited before ready:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.25)
    logs = docker("logs", container_id)
    pytest.fail(f"/readyz not 200 after {READY_TIMEOUT_S} s:\n{logs.stdout}{logs.stderr}")


def wait_until_healthz(container_id: str) -> None:
    """Wait, without a published port, until the server inside answers /healthz."""
    probe = "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=1)"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while docker("exec", container_id, "python", "-c", probe).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail(f"/healthz not answering after {READY_TIMEOUT_S} s")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def running(image: str) -> Iterator[Running]:
    # Run it as the Kubernetes Deployment does: read-only root, scratch /tmp, no capabilities.
    # `127.0.0.1::8000` lets the engine pick a free loopback port; `docker port` tells which.
    started = docker(
        "run",
        "--detach",
        "--publish",
        f"127.0.0.1::{CONTAINER_PORT}",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        image,
    )
    assert started.returncode == 0, started.stderr
    container_id = started.stdout.strip()
    try:
        port = docker("port", container_id, f"{CONTAINER_PORT}/tcp").stdout.split()[0]
        url = "http://" + port.replace("0.0.0.0", "127.0.0.1")
        wait_until_ready(container_id, url)
        yield Running(container_id, url)
    finally:
        docker("rm", "--force", container_id)


def increment(running: Running, number: str, model: str | None = None) -> dict[str, Any]:
    body = {"number": number} if model is None else {"number": number, "model": model}
    response = httpx.post(f"{running.url}/increment", json=body, timeout=30, trust_env=False)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_answers_increment_with_the_exact_check(running: Running) -> None:
    number = "1476233999"
    answer = increment(running, number)
    assert answer["output"] == add_one(number)
    assert answer["check"] == {"correct": True, "expected": None}  # expected: only when wrong


def test_flags_a_carry_run_beyond_what_the_image_proved(running: Running) -> None:
    card = ModelCard.model_validate_json((MODELS_DIR / "counter-post.json").read_text())
    decided = card.metrics.decision
    # The image keeps the default (COUNTER_WALKED_CERTIFICATES=check): it checks the walked
    # certificate at load and serves the K it proves, not the card's one-step figure.
    served = increment(running, "12", model="counter-post")["reliable_carry_length"]
    assert decided is not None
    assert served == decided.proved_carry_length
    within = increment(running, "1" + "9" * served, model="counter-post")
    assert within["proved"]
    assert not within["flags"]["beyond_reliable_carry"]
    beyond = increment(running, "1" + "9" * (served + 1), model="counter-post")
    assert beyond["model"]["name"] == "counter-post"
    assert beyond["flags"]["beyond_reliable_carry"]
    assert not beyond["proved"]


def test_serves_as_the_unprivileged_user(running: Running) -> None:
    uid = docker("exec", running.container_id, "id", "-u")
    assert uid.returncode == 0, uid.stderr
    assert int(uid.stdout) == APP_UID
    status = docker("exec", running.container_id, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert "0" not in uids, status  # real, effective, saved and filesystem uid of the server


def test_healthcheck_command_passes_inside_the_image(running: Running) -> None:
    inspected = docker(
        "inspect", "--format", "{{json .Config.Healthcheck.Test}}", running.container_id
    )
    test = json.loads(inspected.stdout)
    assert test[0] == "CMD", test
    check = docker("exec", running.container_id, *test[1:])
    assert check.returncode == 0, check.stdout + check.stderr


def test_image_carries_no_training_stack(running: Running) -> None:
    probe = "import importlib.util as u; print([m for m in ('torch', 'onnx') if u.find_spec(m)])"
    found = docker("exec", running.container_id, "python", "-c", probe)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


def test_stops_cleanly_on_sigterm(image: str) -> None:
    # `docker stop` and Kubernetes send SIGTERM to PID 1; a server that ignores it is killed
    # after the grace period (exit 137) and drops the requests in flight.
    started = docker("run", "--detach", image)
    assert started.returncode == 0, started.stderr
    container_id = started.stdout.strip()
    try:
        wait_until_healthz(container_id)
        stopped = docker("stop", "--time", "30", container_id, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        code = docker("inspect", "--format", "{{.State.ExitCode}}", container_id).stdout.strip()
        assert code == "0", docker("logs", container_id).stderr
    finally:
        docker("rm", "--force", container_id)
