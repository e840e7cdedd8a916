"""bench.load's drain scenario: SIGTERM under keep-alive clients, /count streams and slow
uploads, and what each request got (it stops the server, so it runs last)."""

import json
import signal
import socket
import subprocess
import threading
import time

from bench.load_clients import single, wrong_answers


def drain(server: "subprocess.Popen[bytes]", port: int, clients: int) -> str:
    """SIGTERM under keep-alive clients and 8 /count streams: what each request got."""
    outcomes: dict[str, int] = {}
    uploads: dict[str, int] = {}
    ends: list[str] = []
    lock = threading.Lock()
    sent = threading.Event()
    request = single("1299")[1]
    raw = (
        "POST /increment HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(request)}\r\n\r\n"
    ).encode() + request

    def keep_alive() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            reader = sock.makefile("rb")
            while True:
                try:
                    sock.sendall(raw)
                    status = int(reader.readline().split()[1])
                    close = False
                    length = 0
                    while (line := reader.readline()) not in (b"\r\n", b""):
                        name, _, value = line.decode().partition(":")
                        close |= name.lower() == "connection" and "close" in value
                        length = int(value) if name.lower() == "content-length" else length
                    reader.read(length)
                    key = str(status)
                except (OSError, IndexError, ValueError) as exc:
                    key, close = type(exc).__name__, True
                with lock:
                    outcomes[key] = outcomes.get(key, 0) + 1
                sent.set()
                if close:
                    return

    numbers = [str(10**40 + i) for i in range(700)]
    upload_body = json.dumps({"numbers": numbers, "detail": "none"}).encode()  # about 30 KB
    upload_head = (
        "POST /increment/batch HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(upload_body)}\r\n\r\n"
    ).encode()

    def upload() -> None:
        """Bodies sent in 10 pieces over about half a second, one after another."""
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            reader = sock.makefile("rb")
            while True:
                try:
                    sock.sendall(upload_head)
                    for at in range(0, len(upload_body), len(upload_body) // 10 + 1):
                        sock.sendall(upload_body[at : at + len(upload_body) // 10 + 1])
                        time.sleep(0.05)
                    status = int(reader.readline().split()[1])
                    close, length = False, 0
                    while (line := reader.readline()) not in (b"\r\n", b""):
                        name, _, value = line.decode().partition(":")
                        close |= name.lower() == "connection" and "close" in value
                        length = int(value) if name.lower() == "content-length" else length
                    answer = reader.read(length)
                    key = str(status)
                    if status == 200 and wrong_answers(answer, numbers):
                        key = "wrong"
                except (OSError, IndexError, ValueError) as exc:
                    key, close = type(exc).__name__, True
                with lock:
                    uploads[key] = uploads.get(key, 0) + 1
                if close:
                    return

    def stream() -> None:
        body = json.dumps({"start": "1", "count": 10_000}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"POST /count HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            data = b""
            try:
                while chunk := sock.recv(1 << 16):
                    data += chunk
            except OSError as exc:
                data += f"\n{type(exc).__name__}".encode()
        lines = [line for line in data.split(b"\n") if line.startswith(b"{")]
        last = json.loads(lines[-1]) if lines else {}
        with lock:
            ends.append(str(last.get("reason", "no last line")))

    threads = [threading.Thread(target=keep_alive) for _ in range(clients)]
    threads += [threading.Thread(target=stream) for _ in range(8)]
    threads += [threading.Thread(target=upload) for _ in range(4)]
    for thread in threads:
        thread.start()
    sent.wait(30)
    time.sleep(1)
    server.send_signal(signal.SIGTERM)
    code = server.wait(timeout=60)
    for thread in threads:
        thread.join(timeout=30)
    return (
        f"drain: SIGTERM under {clients} keep-alive clients, 8 /count streams and 4 clients "
        f"uploading 30 KB bodies over half a second each: every request sent on a connection "
        f"until it was told to close: {outcomes}; the uploads: {uploads}; the streams' last "
        f"lines: {sorted(ends)}; exit {code}"
    )
