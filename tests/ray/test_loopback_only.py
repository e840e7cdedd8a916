"""The Ray Serve tests, run in a network namespace whose only interface is loopback.

Told `--node-ip-address=127.0.0.1`, Ray's processes still connect to each other through the
machine's own interface address (ss showed the GCS, raylets and Serve's controller on it).
Tests may send traffic to 127.0.0.0/8 only, so test_serve.py runs in a pytest of its own under
`unshare --net`: there, loopback is the only interface, and Ray has no other address to use.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ray.cluster import NETNS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_ray_serve_on_a_two_node_cluster_with_loopback_only() -> None:
    if os.environ.get(NETNS) == "1":
        pytest.skip("this is the run inside the namespace")
    pytest.importorskip("ray", reason="the ray extra (pip install 'rnn-counter[ray]')")
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("ip")):
        pytest.skip("a network namespace needs root, unshare and ip (util-linux, iproute2)")
    script = (
        'ip link set lo up && exec "$0" -m pytest tests/ray/test_serve.py -q -p no:cacheprovider'
    )
    done = _run(script)
    if done.returncode != 0 and "ActorDiedError" in done.stdout and " passed" not in done.stdout:
        # Every test errored in the module's setup (Serve's proxy killed before it ran): the
        # cluster did not come up, which a starved 2-core machine has done once. One more try;
        # a wrong answer or a failed assertion is never retried.
        done = _run(script)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed is not None, report
    assert int(passed.group(1)) >= 3, report
    assert not re.search(r"\d+ (failed|skipped|error)", done.stdout), report


def _run(script: str) -> subprocess.CompletedProcess[str]:
    """test_serve.py in a pytest of its own, in a new network namespace."""
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", script, sys.executable],
        env={**os.environ, NETNS: "1"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
