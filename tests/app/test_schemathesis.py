"""Schemathesis with every check against the real server: over 1000 generated requests, and
the OpenAPI document must say exactly what the service accepts and answers."""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.server import start_server, stop_server

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SEED = "1"  # a fixed seed: the same 1000+ cases in every run; drop --seed to explore others


@pytest.fixture(scope="module")
def base(shipped: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("schemathesis") / "server.log"
    server, url = start_server(shipped, log, COUNTER_ACCESS_LOG="false")
    yield url
    stop_server(server)


@pytest.mark.server
@pytest.mark.slow
def test_schemathesis_finds_nothing(base: str) -> None:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{base}/openapi.json",
        "--max-examples",
        "60",
        "--workers",
        "1",
        "--seed",
        SEED,
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.app.schemathesis_hooks",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", report)
    assert generated is not None, report[-3000:]
    assert int(generated.group(1)) >= 1000
    assert generated.group(1) == generated.group(2)
    assert "cannot validate" not in report  # the NDJSON stream is checked too
