"""The real server for tests: `python -m app` on a free loopback port, started until /readyz
says 200, and stopped with SIGTERM as an orchestrator would."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

READY_WITHIN_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(
    models_dir: Path, log: Path, **settings: str
) -> tuple[subprocess.Popen[bytes], str]:
    """The running server and its base URL, once ready; its output goes to `log`.

    settings: extra COUNTER_* environment, e.g. COUNTER_MAX_CONNECTIONS="20".
    """
    port = free_port()
    env = {
        **os.environ,
        "COUNTER_PORT": str(port),
        "COUNTER_MODELS_DIR": str(models_dir),
        "COUNTER_DRAIN_SECONDS": "0.5",
        **settings,
    }
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "app"], env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while True:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"not ready within {READY_WITHIN_S} s"
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=1) as ready:
                    if ready.status == 200:
                        return server, base
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
    except BaseException:
        stop_server(server)
        raise


def stop_server(server: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then the exit status once the server has shut down."""
    server.send_signal(signal.SIGTERM)
    return server.wait(timeout=20)
