"""A rolling update against a real uvicorn process: after SIGTERM every request already sent on
an open connection is answered for real (no 503, no reset), each told Connection: close; /count
streams in flight end with a last line saying why; only new connections are refused."""

import json
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.app.server import connect, read_response, start_server

pytestmark = pytest.mark.server


def test_sigterm_loses_no_answer(shipped: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server, base = start_server(shipped, log, COUNTER_DRAIN_SECONDS="3")
    stop = threading.Event()
    statuses: list[int] = []
    lost: list[str] = []  # a request sent on a connection not told to close, unanswered
    ends: list[dict[str, object]] = []
    lock = threading.Lock()

    def client() -> None:
        body = b'{"number": "1299", "detail": "none"}'
        head = f"POST /increment HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
        request = head.encode() + b"Content-Type: application/json\r\n\r\n" + body
        try:
            sock = connect(base, 10)
        except OSError:
            return
        with sock:
            while not stop.is_set():
                try:
                    sock.sendall(request)
                    status, headers, _ = read_response(sock)
                except OSError as exc:
                    with lock:
                        lost.append(repr(exc))
                    return
                with lock:
                    statuses.append(status)
                if headers.get("connection") == "close":
                    return  # told to go: a new connection would find nobody listening

    def stream() -> None:
        body = json.dumps({"start": "1", "count": 10_000}).encode()
        head = f"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
        with connect(base, 30) as sock:
            sock.sendall(head.encode() + b"Content-Type: application/json\r\n\r\n" + body)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
                if b'"done":true' in data:
                    break
        last = [line for line in data.split(b"\n") if line.startswith(b"{")][-1]
        with lock:
            ends.append(json.loads(last))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(8)]
    threads += [threading.Thread(target=stream, daemon=True) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(statuses) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        port = int(base.rsplit(":", 1)[1])
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
            pass  # new connections: refused
        code = server.wait(timeout=30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        if server.poll() is None:
            server.kill()
    assert code == 0, log.read_text()[-2000:]
    assert lost == []
    assert len(statuses) >= 200
    assert set(statuses) == {200}, sorted(set(statuses))
    assert [end.get("reason") for end in ends] == ["shutdown", "shutdown"], ends
