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


def test_sigterm_answers_uploads_in_flight(shipped: Path, tmp_path: Path) -> None:
    """An upload whose body arrives during the drain is answered for real; one whose body is
    still arriving when the drain ends is refused with 503 and Retry-After, which its client
    reads before it is closed: never a 500 (the graceful shutdown's timeout cancelling it),
    never a reset."""
    log = tmp_path / "server.log"
    server, base = start_server(shipped, log, COUNTER_DRAIN_SECONDS="2")
    numbers = [str(10**40 + i) for i in range(700)]  # about 30 KB: a small body
    small = json.dumps({"numbers": numbers, "detail": "none"}).encode()
    large = json.dumps({"numbers": numbers * 6, "detail": "none"}).encode()  # past 64 KiB
    ping = b'{"number": "1299", "detail": "none"}'
    try:
        uploads = [connect(base, 30), connect(base, 30)]
        for sock, body in zip(uploads, (small, large), strict=True):
            # a first request on each, so both are open connections the server holds
            sock.sendall(post("/increment", ping))
            assert read_response(sock)[0] == 200
            sock.sendall(post("/increment/batch", body)[: -len(body) // 2])
        arrives, late = uploads
        server.send_signal(signal.SIGTERM)
        arrives.sendall(small[-len(small) // 2 :])
        status, headers, answer = read_response(arrives)
        assert status == 200, answer[:300]
        assert [r["output"] for r in json.loads(answer)["results"]] == [
            str(int(n) + 1) for n in numbers
        ]
        assert headers["connection"] == "close"
        status, headers, answer = read_response(late)  # waits for the drain's end
        assert status == 503, answer[:300]
        assert headers["retry-after"] == "1"
        assert b"COUNTER_DRAIN_SECONDS" in answer
        late.sendall(large[-len(large) // 2 :])  # read and dropped, then the close
        assert late.recv(1024) == b""  # an orderly end, not ECONNRESET
        for sock in uploads:
            sock.close()
        code = server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert code == 0, log.read_text()[-2000:]
    assert "Traceback" not in log.read_text()


def post(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"Content-Type: application/json\r\n\r\n" + body
