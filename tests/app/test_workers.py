"""COUNTER_WORKERS=2: the real `python -m app`, a supervisor and two workers on one port.

Which worker holds a connection is read from the kernel: the server side of a client's
connection is the socket in /proc/net/tcp whose peer is the client's port, and the worker that
holds it is the one with that socket among its file descriptors.
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import workers
from app.settings import Settings
from tests.app.server import (
    connect,
    free_port,
    read_response,
    request,
    start_server,
    stop_server,
)

BODY = b'{"number": "1999"}'
WITHIN_S = 20.0


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in text.split()}


def _holder(sock: socket.socket, candidates: set[int]) -> int:
    """The process among `candidates` holding the server side of this client connection."""
    client_port = sock.getsockname()[1]
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == client_port and fields[3] == "01":  # ESTABLISHED
            inodes.add(fields[9])
    for pid in candidates:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if re.fullmatch(r"socket:\[(\d+)\]", target) and target[8:-1] in inodes:
                return pid
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def _ask(sock: socket.socket, path: str = "/increment", body: bytes = BODY) -> tuple[int, bytes]:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    status, _, answer = read_response(sock)
    return status, answer


def _spread(base: str, pids: set[int], connections: int = 24) -> dict[int, list[socket.socket]]:
    """Open connections, one request each (kept alive), grouped by the worker that holds them."""
    held: dict[int, list[socket.socket]] = {}
    for _ in range(connections):
        sock = connect(base)
        status, answer = _ask(sock)
        assert status == 200, answer
        assert b'"output":"2000"' in answer
        held.setdefault(_holder(sock, pids), []).append(sock)
    return held


def _requests_counted(base: str) -> float:
    _, _, text = request(base, "GET", "/metrics")
    series = rb'counter_http_request_seconds_count\{method="POST",route="/increment",status="200"\}'
    found = re.findall(series + rb" (\S+)", text)
    assert len(found) <= 1, text[:2000]
    return float(found[0]) if found else 0.0


def _wait(condition: object, what: str) -> None:
    deadline = time.monotonic() + WITHIN_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {WITHIN_S} s: {what}"
        time.sleep(0.02)


@pytest.fixture
def two(shipped: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """A supervisor with two workers, both ready; stopped (and its exit checked) by each test."""
    log = tmp_path / "server.log"
    server, base = start_server(shipped, log, COUNTER_WORKERS="2", COUNTER_DRAIN_SECONDS="3")
    try:
        yield server, base, log
    finally:
        if server.poll() is None:
            stop_server(server)


@pytest.mark.server
def test_two_workers_answer_and_metrics_count_every_request_once(
    two: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    server, base, log = two
    pids = _children(server.pid)
    assert len(pids) == 2, pids
    held = _spread(base, pids)
    assert set(held) == pids, f"only {set(held)} of {pids} answered"
    for socks in held.values():
        for sock in socks:
            sock.close()
    # Asked on new connections, so both workers answer the scrape: each says every request.
    sent = sum(len(socks) for socks in held.values())
    assert {_requests_counted(base) for _ in range(12)} == {sent}
    status, _, body = request(base, "GET", "/readyz")
    assert status == 200, body
    assert stop_server(server) == 0, log.read_text()


@pytest.mark.server
def test_a_killed_worker_is_restarted_and_logged_and_readyz_waits_for_it(
    two: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    server, base, log = two
    before = _children(server.pid)
    kept = _spread(base, before)
    counted = _requests_counted(base)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    # While it is replaced, its sibling (asked on a connection it holds) says not ready.
    survivor = kept[max(before)][0]

    def ready() -> bool:
        survivor.sendall(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
        return read_response(survivor)[0] == 200

    _wait(lambda: not ready(), "/readyz 503 while one restarts")
    _wait(ready, "/readyz 200 once it is back")
    after = _children(server.pid)
    assert len(after) == 2
    assert victim not in after
    assert before - {victim} < after
    assert re.search(
        rf"worker \d \(pid {victim}\) exited with signal 9; restarting", log.read_text()
    )
    held = _spread(base, after)
    assert set(held) == after  # the new worker serves
    for socks in [*held.values(), *kept.values()]:
        for sock in socks:
            sock.close()
    # The dead worker's requests still count (its files stay), and the new ones are added.
    assert _requests_counted(base) == counted + sum(len(s) for s in held.values())
    assert stop_server(server) == 0, log.read_text()


@pytest.mark.server
def test_sigterm_drains_every_worker_and_the_supervisor_exits_after_the_last(
    two: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    server, base, log = two
    pids = _children(server.pid)
    held = _spread(base, pids)
    try:
        server.send_signal(signal.SIGTERM)
        # Every worker drains: on a connection it already had, /readyz turns 503, stopping, and
        # the answer says Connection: close.
        for socks in held.values():
            probe = socks[0]
            answers: list[tuple[int, dict[str, str], bytes]] = []

            def stopping(
                probe: socket.socket = probe,
                answers: list[tuple[int, dict[str, str], bytes]] = answers,
            ) -> bool:
                probe.sendall(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
                answers.append(read_response(probe))
                return answers[-1][0] == 503

            _wait(stopping, "/readyz 503 in every worker")
            _, headers, answer = answers[-1]
            assert headers.get("connection") == "close", headers
            assert b"stopping" in answer
        assert server.wait(timeout=WITHIN_S) == 0, log.read_text()
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
        with pytest.raises(ConnectionRefusedError):
            connect(base)
        text = log.read_text()
        assert text.count("Application shutdown complete") == 2, text
        assert "Traceback" not in text
    finally:
        for socks in held.values():
            for sock in socks:
                sock.close()


def _two_workers(shipped: Path, monkeypatch: pytest.MonkeyPatch) -> workers.Supervisor:
    """A supervisor of two workers serving the shipped models on a free port, not yet run."""
    for name, value in {
        "COUNTER_MODELS_DIR": str(shipped),
        "COUNTER_WALKED_CERTIFICATES": "skip",
        "COUNTER_PORT": "0",
    }.items():
        monkeypatch.setenv(name, value)
    return workers.Supervisor(Settings(), 2)


@pytest.mark.server
def test_a_sigterm_as_the_first_worker_becomes_ready_stops_cleanly(
    shipped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker stop` right after start: the stop closes the listening sockets while the
    supervisor is between worker 0's readiness and starting the others; it must start no more
    workers and exit 0, not fail on a closed socket."""
    supervisor = _two_workers(shipped, monkeypatch)
    start_first = supervisor._start_first

    def ready_then_stopped() -> int | None:
        status = start_first()
        supervisor._stop(signal.SIGTERM, None)  # as the signal handler would, at this moment
        return status

    monkeypatch.setattr(supervisor, "_start_first", ready_then_stopped)
    assert supervisor.run() == 0
    assert supervisor.slots[1].process is None
    assert supervisor.slots[1].started == 0


@pytest.mark.server
def test_a_sigterm_while_a_worker_is_being_started_reaches_that_worker_too(
    shipped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker stop` as worker 1 is being started: the signal lands after its process exists
    but before the supervisor holds it, so the stop's pass over the workers misses it; it must
    still be stopped, and the supervisor exit 0 without waiting out its deadline."""
    supervisor = _two_workers(shipped, monkeypatch)
    popen = subprocess.Popen

    def spawned_then_stopped(*args: Any, **kwargs: Any) -> "subprocess.Popen[bytes]":
        process = popen(*args, **kwargs)
        if kwargs["env"][workers.ENV_SLOT] == "1":
            supervisor._stop(signal.SIGTERM, None)  # as the signal handler would, at this moment
        return process

    monkeypatch.setattr(subprocess, "Popen", spawned_then_stopped)  # as app.workers calls it
    started = time.monotonic()
    assert supervisor.run() == 0
    assert time.monotonic() - started < supervisor.stop_within


@pytest.mark.server
def test_a_worker_that_cannot_start_stops_the_server_with_its_reason(tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    env = {**os.environ, "COUNTER_WORKERS": "2", "COUNTER_MODELS_DIR": str(empty)}
    env["COUNTER_PORT"] = "0"
    done = subprocess.run(
        [sys.executable, "-m", "app"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "error: cannot start" in done.stderr


def test_the_default_is_one_worker_per_cpu_allowed_by_affinity_and_cgroup_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = (
        next(
            line[3:]
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        )
        .strip()
        .lstrip("/")
    )
    leaf = tmp_path / own
    leaf.mkdir(parents=True, exist_ok=True)
    (leaf / "cpu.max").write_text("max 100000\n")
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # a parent's limit binds the leaf
    assert workers._cgroup_quota(tmp_path) == 1.5
    monkeypatch.setattr(workers, "_cgroup_quota", lambda: 1.5)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3})
    assert workers.available_cpus() == 1  # a fraction of a CPU gets no worker of its own
    monkeypatch.setattr(workers, "_cgroup_quota", lambda: None)
    assert workers.available_cpus() == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {3})
    assert workers.available_cpus() == 1


def _listening_on(port: int) -> set[str]:
    """The socket inodes listening on this TCP port (gRPC listens on IPv6 sockets, mapped)."""
    found = set()
    lines = [*Path("/proc/net/tcp").read_text().splitlines()[1:]]
    lines += Path("/proc/net/tcp6").read_text().splitlines()[1:]
    for line in lines:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":  # LISTEN
            found.add(fields[9])
    return found


def _sockets_of(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


@pytest.mark.server
def test_every_worker_serves_grpc_on_the_shared_port(shipped: Path, tmp_path: Path) -> None:
    grpc = pytest.importorskip("grpc")

    port = free_port()
    log = tmp_path / "server.log"
    server, _ = start_server(shipped, log, COUNTER_WORKERS="2", COUNTER_GRPC_PORT=str(port))
    try:
        listening = _listening_on(port)
        for pid in _children(server.pid):
            assert _sockets_of(pid) & listening, f"worker {pid} does not listen for gRPC"
        # Raw bytes, not the generated messages: tritonclient's and kserve's modules, imported
        # by other tests in this process, register the same protobuf names.
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            ready = channel.unary_unary("/inference.GRPCInferenceService/ServerReady")
            assert ready(b"", timeout=10) == b"\x08\x01"  # ServerReadyResponse(ready=true)
    finally:
        assert stop_server(server) == 0, log.read_text()


def test_explicit_model_control_refuses_several_workers(tmp_path: Path) -> None:
    env = {**os.environ, "COUNTER_WORKERS": "2", "COUNTER_MODEL_CONTROL": "explicit"}
    done = subprocess.run(
        [sys.executable, "-m", "app"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "COUNTER_MODEL_CONTROL=explicit needs one worker" in done.stderr
