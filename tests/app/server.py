"""The real server for tests: `python -m app` on a free loopback port, started until /readyz
says 200, and stopped with SIGTERM as an orchestrator would; and a raw HTTP/1.1 client for it
(one request per connection, or a connection to write on as a hostile client would)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# a start that checks counter-post's walked certificate (COUNTER_WALKED_CERTIFICATES=check)
# takes about 12 s on a busy host (docs/benchmarks.md): room for a host busier still
READY_WITHIN_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(
    models_dir: Path, log: Path, **settings: str
) -> tuple[subprocess.Popen[bytes], str]:
    """The running server and its base URL, once ready; its output goes to `log`.

    settings: extra COUNTER_* environment, e.g. COUNTER_MAX_CONNECTIONS="20". A walked
    certificate is not checked (about half a second of CPU a model) unless
    COUNTER_WALKED_CERTIFICATES says "check".
    """
    port = free_port()
    env = {
        **os.environ,
        "COUNTER_PORT": str(port),
        "COUNTER_MODELS_DIR": str(models_dir),
        "COUNTER_DRAIN_SECONDS": "0.5",
        "COUNTER_WORKERS": "1",  # one process, as before app.workers; a test may ask for more
        "ORT_DISABLE_TELEMETRY": "1",  # as make, the image and the manifests start it
        "COUNTER_WALKED_CERTIFICATES": "skip",
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
            except OSError:  # refused, or (several workers) queued until a worker is up
                time.sleep(0.05)
    except BaseException:
        stop_server(server)
        raise


def stop_server(server: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then the exit status once the server has shut down."""
    server.send_signal(signal.SIGTERM)
    return server.wait(timeout=20)


@contextmanager
def serving(shipped: Path, tmp_path: Path, **settings: str) -> Iterator[tuple[int, str, Path]]:
    """A server with these COUNTER_* settings: (pid, base URL, log file)."""
    log = tmp_path / "server.log"
    server, base = start_server(shipped, log, **settings)
    try:
        yield server.pid, base, log
    finally:
        stop_server(server)


def get_json(base: str, path: str) -> Any:
    """GET a JSON document from a running server."""
    with urllib.request.urlopen(f"{base}{path}", timeout=10) as response:
        return json.loads(response.read())


def increment(base: str, number: str, model: str) -> Any:
    """POST /increment for one number on a running server: the answer's JSON."""
    body = json.dumps({"number": number, "model": model}).encode()
    request = urllib.request.Request(
        f"{base}/increment", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def connect(base: str, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", _port(base)), timeout=timeout)
    return sock


def request(
    base: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on a new connection: status, headers (lower-case), body."""
    with connect(base, 30) as sock:
        lines = [f"{method} {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without a complete response: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body
