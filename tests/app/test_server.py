"""The real server: `python -m app` on a free loopback port, asked, then stopped with SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.server
def test_serves_then_exits_cleanly_on_sigterm(shipped: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "COUNTER_PORT": str(port), "COUNTER_MODELS_DIR": str(shipped)}
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "app"], env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "not ready within 30 s"
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=1) as ready:
                    if ready.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)

        request = urllib.request.Request(
            f"{base}/increment",
            data=b'{"number": "1999"}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.loads(response.read())
        assert answer["output"] == "2000"
        assert answer["check"]["correct"] is True
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=20)
    assert code == 0, log.read_text()
    text = log.read_text()
    assert "Application shutdown complete" in text
    assert "Traceback" not in text
