"""Hostile clients and overload, against a real uvicorn process on loopback: every attack the
reliability review found is refused or bounded, and the service goes on answering.

Each test makes its own server with small limits so the attacks stay small and quick.
"""

import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.host import resident
from core.codec import add_one
from tests.app.server import (
    connect,
    read_response,
    request,
    serving,
    start_server,
)

pytestmark = pytest.mark.server
LONG = "7" * 1_000_000  # a 10^6-digit number: about 0.4 s of model run


def increment(base: str, number: str, **extra: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"number": number, "detail": "none", **extra}).encode()
    return request(base, "POST", "/increment", body, {"Content-Type": "application/json"})


def metric(base: str, series: str) -> float:
    _, _, body = request(base, "GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_idle_connections_are_closed_and_others_are_served(shipped: Path, tmp_path: Path) -> None:
    """Connections that send nothing are closed at the header deadline; a client is served."""
    with serving(shipped, tmp_path, COUNTER_HEADER_TIMEOUT_SECONDS="1") as (_, base, _):
        idle = [connect(base) for _ in range(40)]
        assert increment(base, "41")[0] == 200
        assert all(closed_by_server(sock, 5) for sock in idle)
        for sock in idle:
            sock.close()


def test_connections_past_the_cap_are_refused_at_once_and_logged_once(
    shipped: Path, tmp_path: Path
) -> None:
    settings = {"COUNTER_MAX_CONNECTIONS": "10", "COUNTER_HEADER_TIMEOUT_SECONDS": "30"}
    with serving(shipped, tmp_path, **settings) as (_, base, log):
        held = [connect(base) for _ in range(10)]
        time.sleep(0.3)
        extra = [connect(base) for _ in range(25)]
        answers = [read_response(sock) for sock in extra]
        assert {status for status, _, _ in answers} == {503}
        assert all(headers["retry-after"] == "1" for _, headers, _ in answers)
        assert all(b"COUNTER_MAX_CONNECTIONS" in body for _, _, body in answers)
        for sock in held + extra:
            sock.close()
        time.sleep(0.3)
        assert increment(base, "41")[0] == 200  # freed slots serve again
        refusals = [line for line in log.read_text().splitlines() if "refused" in line]
    assert len(refusals) == 1, refusals  # one line for the burst, not one per attempt


def test_a_complete_header_past_the_cap_is_431(shipped: Path, tmp_path: Path) -> None:
    with serving(shipped, tmp_path, COUNTER_MAX_HEADER_BYTES="8192") as (_, base, _):
        status, headers, body = request(base, "GET", "/healthz", headers={"X-Big": "a" * 20_000})
        assert status == 431
        assert headers["connection"] == "close"
        assert b"COUNTER_MAX_HEADER_BYTES" in body
        assert request(base, "GET", "/healthz", headers={"X-Ok": "a" * 4000})[0] == 200


def test_a_request_answered_before_its_body_leaves_the_connection_usable(
    shipped: Path, tmp_path: Path
) -> None:
    """A refusal that reads no body (here 415, for a 200 KB body that is not JSON) keeps the
    connection: the rest of the body is discarded, and the next request on it is answered as
    itself, not counted as an oversized header (431)."""
    body = b"x" * 200_000
    settings = {"COUNTER_MAX_HEADER_BYTES": "8192"}
    with serving(shipped, tmp_path, **settings) as (_, base, _), connect(base) as sock:
        head = "POST /increment HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
        sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode())
        status, headers, _ = read_response(sock)
        assert status == 415
        assert headers.get("connection") != "close"
        sock.sendall(body)
        good = json.dumps({"number": "1299"}).encode()
        next_head = "POST /increment HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        sock.sendall(f"{next_head}Content-Length: {len(good)}\r\n\r\n".encode() + good)
        status, _, answer = read_response(sock)
        assert status == 200, answer[:300]
        assert json.loads(answer)["output"] == "1300"


def test_unterminated_headers_are_cut_off_and_memory_stays_flat(
    shipped: Path, tmp_path: Path
) -> None:
    """8 connections each streaming an endless header: each is answered 431 and closed after
    about the cap, and the server does not buffer what they send."""
    with serving(shipped, tmp_path, COUNTER_MAX_HEADER_BYTES="16384") as (pid, base, _):
        before = resident(pid).total

        def attack() -> int:
            with connect(base, 10) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Endless: ")
                sent = 0
                try:
                    while sent < 64 << 20:
                        sock.sendall(b"a" * 65536)
                        sent += 65536
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return sent

        with ThreadPoolExecutor(8) as pool:
            sent = list(pool.map(lambda _: attack(), range(8)))
        assert max(sent) < 64 << 20  # the server hung up long before
        assert resident(pid).total - before < 30
        assert increment(base, "41")[0] == 200


def test_trickled_headers_get_408_at_the_deadline(shipped: Path, tmp_path: Path) -> None:
    with serving(shipped, tmp_path, COUNTER_HEADER_TIMEOUT_SECONDS="1") as (_, base, _):
        with connect(base) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
            for _ in range(3):  # a byte now and then keeps no timer alive
                time.sleep(0.3)
                sock.sendall(b"s")
            status, headers, body = read_response(sock)
        assert status == 408
        assert b"COUNTER_HEADER_TIMEOUT_SECONDS" in body
        assert headers["connection"] == "close"


def test_an_abandoned_long_request_stops_its_run(shipped: Path, tmp_path: Path) -> None:
    """Clients that send a 10^6-digit number and leave cost far less CPU than running it."""
    # Two large requests at once, so that a run still stopping does not turn the next away.
    with serving(shipped, tmp_path, COUNTER_MAX_LARGE_REQUESTS="2") as (pid, base, _):
        start = cpu_seconds(pid)
        assert increment(base, LONG)[0] == 200
        one_run = cpu_seconds(pid) - start
        body = json.dumps({"number": LONG, "detail": "none"}).encode()
        gone = metric(base, 'counter_errors_total{kind="client_disconnected"}')
        start = cpu_seconds(pid)
        for _ in range(6):
            with connect(base) as sock:
                head = f"POST /increment HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
                sock.sendall(head.encode() + b"Content-Type: application/json\r\n\r\n" + body)
                time.sleep(0.05)  # it has started; then the client is gone
        deadline = time.monotonic() + 30
        while metric(base, "counter_pending_steps") > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        spent = cpu_seconds(pid) - start
        stopped = metric(base, 'counter_errors_total{kind="client_disconnected"}') - gone
    assert stopped >= 4  # most were stopped (one may finish as its client leaves)
    assert spent < 3.5 * one_run  # six runs would cost six times one


def test_queued_work_past_the_bound_is_refused_with_retry_after(
    shipped: Path, tmp_path: Path
) -> None:
    settings = {
        "COUNTER_MAX_PENDING_STEPS": "2500000",
        "COUNTER_WORKER_THREADS": "1",
        "COUNTER_MAX_LARGE_REQUESTS": "64",  # this test is about the queue of runs
    }
    with serving(shipped, tmp_path, **settings) as (_, base, _), ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: increment(base, LONG), range(8)))
    statuses = sorted(status for status, _, _ in answers)
    assert set(statuses) == {200, 503}
    assert statuses.count(200) >= 2
    for status, headers, body in answers:
        if status == 503:
            assert headers["retry-after"] == "1"
            assert b"COUNTER_MAX_PENDING_STEPS" in body
        else:
            assert json.loads(body)["output"] == add_one(LONG)


def test_many_large_bodies_at_once_are_refused_before_they_are_read(
    shipped: Path, tmp_path: Path
) -> None:
    """32 clients each send a 10^6-digit number at once: a few are held and answered, the rest
    refused with 503 before their bodies are read, and memory peaks at a few requests' worth."""
    with serving(shipped, tmp_path, COUNTER_MAX_LARGE_REQUESTS="2") as (pid, base, _):
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(lambda _: increment(base, LONG), range(32)))
        peak = 0.0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) >= 2
    refused = [body for status, _, body in answers if status == 503]
    assert refused
    assert all(b"COUNTER_MAX_LARGE_REQUESTS" in body for body in refused)
    assert peak < 400  # MB: one run at a time, not 32 bodies and their copies


def test_a_run_past_the_time_limit_is_stopped(shipped: Path, tmp_path: Path) -> None:
    with serving(shipped, tmp_path, COUNTER_MAX_RUN_SECONDS="0.05") as (_, base, _):
        status, headers, body = increment(base, LONG)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert json.loads(body)["error"] == "timed_out"
        assert b"COUNTER_MAX_RUN_SECONDS" in body
        assert increment(base, "41")[0] == 200


def test_no_redirect_is_built_from_the_host_header(shipped: Path, tmp_path: Path) -> None:
    with serving(shipped, tmp_path) as (_, base, _):
        status, headers, _ = request(base, "GET", "/models/", headers={"Host": "evil.example"})
    assert status == 404
    assert "location" not in headers


def test_echoed_values_are_cut_to_a_preview(shipped: Path, tmp_path: Path) -> None:
    name = "m" * 100_000
    with serving(shipped, tmp_path) as (_, base, _):
        for body in (
            {"number": "1", "model": name},
            {"number": "1", name: 1},
            {"number": "1" + "x" * 100_000},
        ):
            encoded = json.dumps(body).encode()
            status, _, answer = request(
                base, "POST", "/increment", encoded, {"Content-Type": "application/json"}
            )
            assert 400 <= status < 500
            assert len(answer) < 1000


def test_detail_none_sends_the_answer_and_little_else(shipped: Path, tmp_path: Path) -> None:
    """A 10^6-digit answer with detail none: the output itself (10^6 digits) and the flags;
    the input is not echoed back and the exact answer is sent only if the model was wrong."""
    with serving(shipped, tmp_path) as (_, base, _):
        status, _, body = increment(base, LONG)
    assert status == 200
    assert len(body) < 1_010_000
    answer = json.loads(body)
    assert answer["input_digits"] == 1_000_000
    assert answer["output"] == add_one(LONG)


def test_sigterm_drains_and_every_request_sent_gets_its_response(
    shipped: Path, tmp_path: Path
) -> None:
    """Under load: /readyz turns 503 at once, new connections are refused, responses say
    Connection: close, no request sent on an open connection goes unanswered, exit 0."""
    log = tmp_path / "server.log"
    server, base = start_server(shipped, log, COUNTER_DRAIN_SECONDS="1.5")
    stop = threading.Event()
    unanswered: list[str] = []
    answered = 0
    closes = 0
    lock = threading.Lock()

    def client() -> None:
        nonlocal answered, closes
        sock: socket.socket | None = None
        while not stop.is_set():
            try:
                if sock is None:
                    sock = connect(base, 5)
            except OSError:
                time.sleep(0.01)  # refused after shutdown: nothing was sent
                continue
            body = b'{"number": "1299", "detail": "none"}'
            head = f"POST /increment HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
            try:
                sock.sendall(head.encode() + b"Content-Type: application/json\r\n\r\n" + body)
                _, headers, _ = read_response(sock)
            except OSError as exc:
                with lock:
                    unanswered.append(repr(exc))
                sock.close()
                sock = None
                continue
            with lock:
                answered += 1
                closes += headers.get("connection") == "close"
            if headers.get("connection") == "close":
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(8)]
    probe = connect(base)  # open before SIGTERM: new connections are refused after it
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while answered < 100 and time.monotonic() < deadline:  # under load before SIGTERM
            time.sleep(0.05)
        server.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        probe.sendall(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
        ready, ready_headers, _ = read_response(probe)
        code = server.wait(timeout=30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        probe.close()
        if server.poll() is None:
            server.kill()
    assert ready == 503
    assert ready_headers["connection"] == "close"
    assert code == 0, log.read_text()[-2000:]
    assert answered > 100
    assert closes >= 8  # every keep-alive client was told to go during the drain
    assert unanswered == []
