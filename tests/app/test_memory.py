"""The server's memory against a real process: batches reuse the pages the last one freed,
and a 10^6-digit request's memory goes back to the OS once it is answered (app.process)."""

import json
import time
from pathlib import Path

import pytest

from bench import http
from bench.host import resident
from tests.app.server import request, serving

BATCH = http.BATCH.encode()  # what bench.http measures: 1024 numbers of 20 digits, detail none
JSON = {"Content-Type": "application/json"}

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def page_faults(pid: int) -> int:
    """Minor page faults of the process so far (/proc/PID/stat field 10)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[7])


def test_batches_reuse_the_memory_the_last_one_freed(shipped: Path, tmp_path: Path) -> None:
    """A 1024 x 20-digit batch needs a few MB of arrays; with glibc's default trim threshold
    each one faulted in 1 400-1 700 fresh pages (about 6 MB), a sixth of its CPU."""
    with serving(shipped, tmp_path) as (pid, base, _):
        for _ in range(3):  # the heap grows to what a batch needs
            assert request(base, "POST", "/increment/batch", BATCH, JSON)[0] == 200
        before = page_faults(pid)
        for _ in range(10):
            assert request(base, "POST", "/increment/batch", BATCH, JSON)[0] == 200
        per_batch = (page_faults(pid) - before) / 10
        # Measured: 1 600-1 700 with glibc's 128 KB trim threshold; 110-215 now, the rest being
        # Python's own small-object arenas, which it maps and unmaps itself.
        assert per_batch < 400, f"{per_batch:.0f} pages faulted in per batch"


def test_a_long_numbers_memory_goes_back_once_answered(shipped: Path, tmp_path: Path) -> None:
    """A 10^6-digit answer briefly needs a few hundred MB; the process keeps none of it."""
    body = json.dumps({"number": "7" * 1_000_000, "detail": "none"}).encode()
    with serving(shipped, tmp_path) as (pid, base, _):
        assert request(base, "POST", "/increment/batch", BATCH, JSON)[0] == 200
        ready = resident(pid).total
        status, _, answer = request(base, "POST", "/increment", body, JSON)
        assert status == 200, answer[:300]
        assert json.loads(answer)["output"] == "7" * 999_999 + "8"
        # The heaps are trimmed once it is answered (just after its last byte is sent, so the
        # client may look first): what the batch left is handed back too.
        deadline = time.monotonic() + 5
        while resident(pid).total >= ready + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert resident(pid).total < ready + 1, f"{ready:.1f} -> {resident(pid).total:.1f} MB"
