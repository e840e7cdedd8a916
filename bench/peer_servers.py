"""The servers bench.peers compares, ours, MLServer and KServe: how each is set up, started,
checked against onnxruntime's own answer and stopped, and the runs measured on it."""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.host import resident
from bench.http import free_port
from core.session import open_session

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "counter.onnx"
RUNTIMES = REPO / "bench" / "peers"
NUMBER = "1476233999"
# The raw ONNX contract: digits least significant first, plus the extra zero step.
DIGITS = [int(d) for d in reversed(NUMBER)] + [0]
BODY = json.dumps(
    {"inputs": [{"name": "digits", "shape": [1, len(DIGITS)], "datatype": "INT64", "data": DIGITS}]}
)
INFER = "/v2/models/counter/infer"
READY = "/v2/models/counter/ready"
TOLERANCE = 1e-6


@dataclass(frozen=True)
class Run:
    """One wrk run: throughput, latency percentiles (ms), and what went wrong."""

    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int  # answers other than 2xx or 3xx
    socket_errors: int  # connect, read, write errors and timeouts (wrk's is 2 s)


@dataclass(frozen=True)
class PaRun:
    """One perf_analyzer run: infer/s, latency percentiles (ms) and the server's CPU time per
    request (its process tree's user + system time over the run / the run's requests)."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float = float("nan")


@dataclass
class Server:
    """How to start one server, and what was measured on it."""

    key: str
    label: str
    argv: list[str]
    env: dict[str, str]
    port: int
    workdir: Path
    versions: str = ""
    grpc_port: int | None = None
    starts: list[float] = field(default_factory=list)
    runs: dict[int, list[Run]] = field(default_factory=dict)
    pa_runs: dict[tuple[str, int], list[PaRun]] = field(default_factory=dict)
    rss_mb: float = float("nan")
    process: "subprocess.Popen[bytes] | None" = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "server.log"

    def exit_if_dead(self, when: str) -> None:
        if self.process is not None and self.process.poll() is not None:
            sys.exit(
                f"{self.label} exited with {self.process.returncode} {when} (0: something else "
                f"sent it SIGTERM or SIGINT); the end of its "
                f"log, {self.log}:\n{self.log.read_text(errors='replace')[-3000:]}"
            )


def _peer_python(venvs: Path, name: str) -> Path:
    python = venvs / name / "bin" / "python"
    if not python.exists():
        sys.exit(f"{python} is missing: build the peers' virtualenvs first (make peers-env)")
    return python


def _versions(python: Path, packages: list[str]) -> str:
    code = (
        "import importlib.metadata as m; "
        f"print(', '.join(p + ' ' + m.version(p) for p in {packages!r}))"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def ours(work: Path) -> Server:
    """Ours, default settings, serving counter alone like the peers (its card beside it)."""
    port, grpc_port = free_port(), free_port()
    folder = work / "ours"
    models = folder / "models"
    models.mkdir(parents=True)
    for name in (MODEL.name, MODEL.with_suffix(".json").name):
        shutil.copyfile(MODEL.parent / name, models / name)
    env = {
        "COUNTER_PORT": str(port),
        "COUNTER_MODELS_DIR": str(models),
        "COUNTER_DRAIN_SECONDS": "0",  # stop at once: nothing is in flight when we stop it
        "COUNTER_WORKERS": "1",  # one process, as each peer is measured
        "COUNTER_GRPC_PORT": str(grpc_port),
    }
    versions = _versions(Path(sys.executable), ["rnn-counter", "uvicorn", "onnxruntime"])
    # The project's console script runs `python -m app`'s main(); its command line does not
    # match a `pkill -f "python -m app"` meant for some other copy of the service.
    script = Path(sys.executable).parent / "rnn-counter-serve"
    argv = [sys.executable, str(script)] if script.exists() else [sys.executable, "-m", "app"]
    return Server("ours", "ours", argv, env, port, folder, versions, grpc_port)


def mlserver(work: Path, venvs: Path, parallel_workers: int) -> Server:
    """MLServer in its own folder: settings.json and counter/model-settings.json."""
    python = _peer_python(venvs, "mlserver")
    port, grpc_port = free_port(), free_port()
    folder = work / "mlserver"
    (folder / "counter").mkdir(parents=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc_port,  # MLServer always starts its gRPC server (perf_analyzer's)
        "metrics_port": free_port(),
        "parallel_workers": parallel_workers,
    }
    model = {
        "name": "counter",
        "implementation": "mlserver_runtime.CounterRuntime",
        "parameters": {"uri": str(MODEL)},
        # its metadata's tensors: perf_analyzer reads them (the runtime decodes as before)
        "inputs": [{"name": "digits", "datatype": "INT64", "shape": [-1, -1]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, -1, 10]}],
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "counter" / "model-settings.json").write_text(json.dumps(model))
    env = {"PYTHONPATH": f"{RUNTIMES}{os.pathsep}{REPO}"}
    # `mlserver start`, with Triton's ModelConfig added over gRPC for perf_analyzer
    argv = [str(python), str(RUNTIMES / "mlserver_start.py"), "start", str(folder)]
    versions = _versions(python, ["mlserver", "uvicorn", "onnxruntime"])
    label = f"MLServer (parallel_workers {parallel_workers})"
    return Server("mlserver", label, argv, env, port, folder, versions, grpc_port)


def kserve(work: Path, venvs: Path) -> Server:
    python = _peer_python(venvs, "kserve")
    port = free_port()
    argv = [
        str(python),
        str(RUNTIMES / "kserve_server.py"),
        f"--model_path={MODEL}",
        "--model_name=counter",
        f"--http_port={port}",
        "--workers=1",
        "--enable_grpc=false",  # V2 REST only
    ]
    env = {"PYTHONPATH": str(REPO)}
    folder = work / "kserve"
    folder.mkdir()
    versions = _versions(python, ["kserve", "uvicorn", "onnxruntime"])
    return Server("kserve", "KServe", argv, env, port, folder, versions)


def _get(url: str, timeout: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def start(server: Server, core: int) -> float:
    """Start the server pinned to `core`; the seconds from spawn to its first ready answer."""
    log = server.log.open("ab")
    began = time.perf_counter()
    server.process = subprocess.Popen(
        ["taskset", "-c", str(core), *server.argv],
        cwd=server.workdir,
        env={**os.environ, **server.env},
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its own process group, stopped whole (workers included), in this session: a new
        # session is a new scheduling autogroup on Linux, and on a shared machine that alone
        # gave a server a third of the CPU it had in the caller's (docs/benchmarks.md).
        process_group=0,
    )
    log.close()
    while time.perf_counter() - began < 60:
        server.exit_if_dead("while starting")
        try:
            if _get(server.base + READY) == 200:
                return time.perf_counter() - began
        except OSError:
            pass
        time.sleep(0.005)
    stop(server)
    sys.exit(f"{server.label} was not ready within 60 s")


def stop(server: Server) -> None:
    process = server.process
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    server.process = None


def expected() -> npt.NDArray[np.float32]:
    """onnxruntime's own answer, through the session options every server uses."""
    session = open_session(MODEL)
    (probabilities,) = session.run(["probabilities"], {"digits": np.array([DIGITS])})
    result: npt.NDArray[np.float32] = probabilities
    return result


def check(server: Server, reference: npt.NDArray[np.float32]) -> None:
    """One infer; exits unless it is the reference, to TOLERANCE, in the V2 shape."""
    request = urllib.request.Request(
        server.base + INFER, data=BODY.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        sys.exit(f"{server.label}: {exc.code} for the V2 infer: {exc.read()[:500]!r}")
    outputs = {output["name"]: output for output in answer.get("outputs", [])}
    tensor = outputs.get("probabilities")
    if tensor is None or tensor["datatype"] != "FP32" or tensor["shape"] != list(reference.shape):
        sys.exit(f"{server.label}: not a FP32 {list(reference.shape)} 'probabilities': {answer}")
    got = np.asarray(tensor["data"], dtype=np.float64).reshape(reference.shape)
    worst = float(np.max(np.abs(got - reference)))
    if worst > TOLERANCE:
        sys.exit(f"{server.label}: probabilities differ from onnxruntime's by {worst:.3g}")
    with urllib.request.urlopen(server.base + "/v2", timeout=10) as response:
        about = json.loads(response.read())
    server.versions += f"; GET /v2 says {about.get('name')} {about.get('version')}"
    print(f"checked {server.label}: {list(reference.shape)} probabilities, max |diff| {worst:.1e}")


def _tree(pid: int) -> list[int]:
    """The process and all its descendants (MLServer's workers, say)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of the process tree, MB."""
    total = 0.0
    for member in _tree(pid):
        try:
            total += resident(member).total
        except (OSError, KeyError):  # ended since the tree was read (a zombie has no VmRSS)
            continue
    return total


def spread(values: list[float], digits: int) -> str:
    """Median (min-max)."""
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:.{digits}f}"
    return f"{middle:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


@contextmanager
def running(servers: list[Server]) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            stop(server)
