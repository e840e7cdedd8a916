"""A real local Ray cluster for tests: each node a separate `ray start --block` process limited to
one CPU, every address on loopback, every port chosen free (other clusters may run beside it),
and everything it started stopped by process id (never `ray stop`, which would stop every Ray
on the machine).

The recipe is /work/shared/notes/ray.md's: --node-ip-address=127.0.0.1, the GCS port outside
every node's worker port range, usage statistics off. The head's GCS is told to notice a dead
node within about a second and a half (health checks every 500 ms, three misses), where Ray's
defaults take up to 15 s.
"""

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
DEPLOY_RAY = Path(__file__).resolve().parents[2] / "deploy" / "ray"
STARTED_WITHIN_S = 90
STOPPED_WITHIN_S = 15
# Set in the environment of the pytest run that tests/ray/test_loopback_only.py starts inside a
# network namespace of its own.
NETNS = "COUNTER_TEST_LOOPBACK_NETNS"

# GCS settings (RAY_<name> environment variables read by ray's C++ core): a node is dead after
# about 5 s without an answer. 1.5 s (500 ms x 3) once had the GCS give up on the head while
# a busy 2-core CI machine started Serve, and the proxy was killed before it ran.
FAST_FAILURE_DETECTION = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "5",
}


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: each socket stays bound until all are chosen, so the
    kernel cannot hand one port out twice (Ray refuses a node whose components share one)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def descendants(pid: int) -> list[int]:
    """Every process below pid (children first-level, then theirs), by /proc."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.append(child)
            queue.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class Node:
    """One `ray start --block` process and what it started."""

    process: subprocess.Popen[bytes]
    log: Path
    known: set[int] = field(default_factory=set)  # every descendant seen, to stop even orphans

    def processes(self) -> list[int]:
        found = descendants(self.process.pid)
        self.known.update(found)
        return found

    def raylet(self) -> int:
        for pid in self.processes():
            if "/raylet" in command_line(pid).split(" ", 1)[0]:
                return pid
        raise AssertionError(f"no raylet under node {self.process.pid}: {self.log.read_text()}")

    def replicas(self, deployment: str) -> list[int]:
        """The Serve replicas of `deployment` running on this node (by their process title)."""
        return [
            pid
            for pid in self.processes()
            if command_line(pid).startswith(f"ray::ServeReplica:{deployment}:")
        ]

    def stop(self) -> None:
        """SIGTERM to the node, then SIGKILL to whatever of it is left."""
        self.processes()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOPPED_WITHIN_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in self.known:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class Cluster:
    """A head and its worker nodes on this machine."""

    folder: Path
    gcs_port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)
    # This cluster's worker port ranges start here (another cluster may run beside it).
    worker_ports: int = field(default_factory=lambda: random.randrange(20_000, 30_000, 1000))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def _ports(self) -> list[str]:
        """Every port a node opens, free now, and a worker port range of its own, below the
        kernel's ephemeral ports (where the free ones above come from)."""
        low = self.worker_ports + 200 * len(self.nodes)
        named = (
            "--node-manager-port",
            "--object-manager-port",
            "--metrics-export-port",
            "--dashboard-agent-listen-port",
            "--dashboard-agent-grpc-port",
            "--runtime-env-agent-port",
        )
        ports = [f"{name}={port}" for name, port in zip(named, free_ports(len(named)), strict=True)]
        return [*ports, f"--min-worker-port={low}", f"--max-worker-port={low + 150}"]

    def start_node(self) -> Node:
        """The head if there is none yet, else a worker node; returns once it has started."""
        head = not self.nodes
        index = len(self.nodes)
        log = self.folder / f"node{index}.log"
        args = [RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1"]
        args += ["--disable-usage-stats", "--object-store-memory=80000000", *self._ports()]
        if head:
            args += [
                "--head",
                f"--port={self.gcs_port}",
                "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}",
                f"--temp-dir={self.folder / 'ray'}",
            ]
        else:
            args += [f"--address={self.address}"]
        env = {
            **os.environ,
            **FAST_FAILURE_DETECTION,
            "RAY_USAGE_STATS_ENABLED": "0",
            # Replicas import deploy/ray/counter_serve.py by name, as serve.yaml's import_path.
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(DEPLOY_RAY), os.environ.get("PYTHONPATH")])
            ),
        }
        with log.open("wb") as out:
            process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        node = Node(process, log)
        self.nodes.append(node)
        deadline = time.monotonic() + STARTED_WITHIN_S
        while b"Ray runtime started" not in log.read_bytes():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"node not started: {log.read_text()}"
            time.sleep(0.1)
        node.processes()
        return node

    def stop(self) -> None:
        """Worker nodes first, then the head."""
        for node in reversed(self.nodes):
            node.stop()
