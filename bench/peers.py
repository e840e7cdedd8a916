"""Side by side in one run: our V2 infer against MLServer's and KServe's on the same model.

Each server serves the same models/counter.onnx through the same onnxruntime session options
(core.session: 1 intra-op thread, sequential): ours (`python -m app`'s main through the
project's console script, default settings, serving counter alone as the peers do), MLServer
1.7 with a custom runtime (bench/peers/mlserver_runtime.py, an MLModel subclass) and KServe
0.21 with a custom model (bench/peers/kserve_server.py, a kserve.Model subclass served by
kserve.ModelServer). The peers live in virtualenvs of their own under .bench/ (`make
peers-env`). Every server is one process (MLServer: --mlserver-parallel-workers) on a
loopback port (KServe 0.21 listens on 0.0.0.0, its only choice), each with its own default
logging, pinned to one core with taskset; wrk (one thread) runs pinned to another core.
Each server's folder and log stay in --logs (.bench/logs) after the run.

For each server: the time from process start to its first ready answer (GET
/v2/models/counter/ready 200), over --starts fresh starts; one check that its answer is
onnxruntime's own to 1e-6 (no server is measured while answering errors); then, at each
concurrency, wrk drives `POST /v2/models/counter/infer` with the same JSON body (`digits`
INT64 [1, 11], the digits of 1476233999 least significant first plus the extra zero step) in
rounds that alternate between the servers (the order rotates each round). Prints medians over
the rounds with their min-max spread, the resident memory of each server's process tree after
the load, and ours / peer ratios, as Markdown tables.

Then Triton's perf_analyzer (.bench/perf_analyzer, `make peers-env`), the load tool V2 users
trust, pinned to the load core, drives ours and MLServer over HTTP and gRPC at each concurrency,
rounds alternating as wrk's (KServe has no Triton model configuration, which perf_analyzer reads
first). It sends the inputs the server's configuration declares: ours its `number` input (the
counter's answer: output, probabilities, carry run, flags, proof, check), MLServer `digits`
(probabilities only, the lighter request), the same number 1476233999. MLServer answers that
configuration through bench/peers/mlserver_runtime.py (REST) and mlserver_start.py (gRPC).

    python -m bench.peers [--rounds 2] [--duration 3] [--connections 1,16,64] [--starts 2]
                          [--no-perf-analyzer] [--protocols http,grpc]
"""

import argparse
import csv
import json
import os
import platform
import re
import shlex
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

from bench.host import Steal, resident
from bench.http import find_wrk, free_port
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
GOALS = {"mlserver": 3.0, "kserve": 4.0}  # ours / peer, V2 infer req/s at c = 16
PA_GOALS = {("mlserver", "grpc"): 3.0}  # ours / peer, perf_analyzer infer/s at c = 16
# perf_analyzer's --input-data: what each server's model configuration declares
PA_INPUTS = {
    "ours": {"number": {"content": [NUMBER], "shape": [1]}},
    "mlserver": {"digits": {"content": DIGITS, "shape": [1, len(DIGITS)]}},
}
P99_GOAL_MS = 20.0  # ours at c = 64

WRK_SCRIPT = f"""-- bench/peers.py: the same V2 infer request for every server
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{BODY}'
"""


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
    """One perf_analyzer run: infer/s and latency percentiles (ms)."""

    rps: float
    p50_ms: float
    p99_ms: float


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
        start_new_session=True,  # its own process group: stopped whole, workers included
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


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[found.group(2)]
    return float(found.group(1)) * scale


def parse_wrk(out: str) -> Run:
    """Requests/s, the 50% and 99% latencies and the errors from `wrk --latency` output."""

    def find(pattern: str) -> str:
        found = re.search(pattern, out)
        if found is None:
            raise ValueError(f"wrk printed no {pattern!r}:\n{out}")
        return found.group(1)

    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = 0
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if sockets:
        socket_errors = sum(int(n) for n in sockets.groups())
    return Run(
        rps=float(find(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=_ms(find(r"\s50%\s+(\S+)")),
        p99_ms=_ms(find(r"\s99%\s+(\S+)")),
        non_2xx=int(bad.group(1)) if bad else 0,
        socket_errors=socket_errors,
    )


def wrk(
    binary: str, core: int, script: Path, server: Server, seconds: int, connections: int
) -> Run:
    """One wrk run against the server's V2 infer; exits if the server died or wrk failed."""
    args = ["taskset", "-c", str(core), binary, "-t1", f"-c{connections}", f"-d{seconds}s"]
    args += ["--latency", "-s", str(script), server.base + INFER]
    done = subprocess.run(args, capture_output=True, text=True)
    server.exit_if_dead(f"under load (c{connections})")
    if done.returncode != 0:
        sys.exit(f"wrk failed against {server.label}: {done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


def find_perf_analyzer(venvs: Path) -> tuple[Path, dict[str, str]]:
    """perf_analyzer in its virtualenv, and the environment it runs in (libcudart's folder)."""
    binary = venvs / "perf_analyzer" / "bin" / "perf_analyzer"
    if not binary.exists():
        sys.exit(f"{binary} is missing: build the peers' virtualenvs first (make peers-env)")
    found = sorted((venvs / "perf_analyzer").glob("lib/python*/site-packages/nvidia/*/lib"))
    libraries = os.pathsep.join([str(f) for f in found] + [os.environ.get("LD_LIBRARY_PATH", "")])
    return binary, {**os.environ, "LD_LIBRARY_PATH": libraries.rstrip(os.pathsep)}


def perf_analyzer(
    tool: tuple[Path, dict[str, str]],
    core: int,
    server: Server,
    protocol: str,
    seconds: int,
    connections: int,
    work: Path,
    stability: int,
) -> PaRun:
    """One perf_analyzer run at one concurrency: measurement windows of seconds / 2 until
    three agree within `stability` percent (at most 10 windows)."""
    binary, env = tool
    inputs = work / f"pa-{server.key}.json"
    inputs.write_text(json.dumps({"data": [PA_INPUTS[server.key]]}))
    out = work / f"pa-{server.key}-{protocol}-c{connections}.csv"
    port = server.port if protocol == "http" else server.grpc_port
    args = ["taskset", "-c", str(core), str(binary), "-i", protocol, "-u", f"127.0.0.1:{port}"]
    args += ["-m", "counter", "--input-data", str(inputs), "-f", str(out)]
    args += ["--concurrency-range", f"{connections}:{connections}"]
    args += ["-p", str(max(500, seconds * 500)), "-r", "10", "-s", str(stability)]
    if protocol == "http":  # JSON tensors, as wrk's body: MLServer refuses the binary extension
        args += ["--input-tensor-format", "json", "--output-tensor-format", "json"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=work)
    server.exit_if_dead(f"under perf_analyzer ({protocol}, c{connections})")
    if done.returncode != 0 or not out.exists():
        sys.exit(
            f"perf_analyzer failed against {server.label} ({protocol}): "
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    with out.open() as rows:
        row = next(csv.DictReader(rows))
    return PaRun(
        rps=float(row["Inferences/Second"]),
        p50_ms=float(row["p50 latency"]) / 1000,
        p99_ms=float(row["p99 latency"]) / 1000,
    )


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


def median(runs: list[Run], name: str) -> float:
    return float(statistics.median(getattr(run, name) for run in runs))


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (
        f"nproc {os.cpu_count()} ({len(os.sched_getaffinity(0))} usable), {model}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def report(servers: list[Server], args: argparse.Namespace, command: str, wrk_version: str) -> str:
    lines = [
        "## V2 infer side by side: ours, MLServer, KServe",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}; each server pinned to core {args.server_core}, wrk "
        f"({wrk_version}, 1 thread) to core {args.load_core}.",
        "",
        f"Request: `POST {INFER}`, `digits` INT64 [1, {len(DIGITS)}] (the digits of {NUMBER}), "
        f"JSON, {len(BODY)} bytes. {args.rounds} rounds of {args.duration} s per server and "
        "concurrency, alternating servers; medians, (min-max) over the rounds.",
        "",
    ]
    for server in servers:
        lines.append(f"- {server.label}: {server.versions}")
    lines += [
        "",
        "| server | connections | V2 infer req/s | p50 ms | p99 ms | non-2xx / socket errors |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for connections in args.connection_list:
        for server in servers:
            runs = server.runs[connections]
            lines.append(
                f"| {server.label} | {connections} | {spread([r.rps for r in runs], 0)} | "
                f"{spread([r.p50_ms for r in runs], 2)} | {spread([r.p99_ms for r in runs], 2)} "
                f"| {sum(r.non_2xx for r in runs)} / {sum(r.socket_errors for r in runs)} |"
            )
    lines += [
        "",
        f"| server | cold start s (process start to first ready answer, {args.starts} starts) "
        "| RSS after the load MB |",
        "| --- | --- | --- |",
    ]
    for server in servers:
        lines.append(f"| {server.label} | {spread(server.starts, 2)} | {server.rss_mb:.0f} |")
    mine = next((s for s in servers if s.key == "ours"), None)
    peers = [s for s in servers if s.key != "ours"]
    if mine is not None and peers:
        header = " | ".join(f"ours / {p.label} req/s" for p in peers)
        lines += [
            "",
            f"| connections | {header} | ours p99 ms |",
            "| --- | " + "--- | " * len(peers) + "--- |",
        ]
        for connections in args.connection_list:
            ratios = " | ".join(
                f"{median(mine.runs[connections], 'rps') / median(p.runs[connections], 'rps'):.2f}x"
                for p in peers
            )
            p99 = median(mine.runs[connections], "p99_ms")
            lines.append(f"| {connections} | {ratios} | {p99:.2f} |")
        lines.append("")
        if 16 in args.connection_list:
            for peer in peers:
                ratio = median(mine.runs[16], "rps") / median(peer.runs[16], "rps")
                goal = GOALS[peer.key]
                verdict = "met" if ratio >= goal else "NOT met"
                lines.append(
                    f"- c=16, ours / {peer.label}: {ratio:.2f}x (goal >= {goal:g}x): {verdict}"
                )
        if 64 in args.connection_list:
            p99 = median(mine.runs[64], "p99_ms")
            verdict = "met" if p99 < P99_GOAL_MS else "NOT met"
            lines.append(f"- c=64, our p99: {p99:.2f} ms (goal < {P99_GOAL_MS:g} ms): {verdict}")
    lines += pa_report(servers, args)
    every = [r for s in servers for runs in s.runs.values() for r in runs]
    if any(r.non_2xx or r.socket_errors for r in every):
        lines.append(
            f"- WARNING: {sum(r.non_2xx for r in every)} non-2xx answers and "
            f"{sum(r.socket_errors for r in every)} socket errors or timeouts under load"
        )
    return "\n".join(lines)


def pa_report(servers: list[Server], args: argparse.Namespace) -> list[str]:
    """perf_analyzer's table, its ratios and the gRPC goal."""
    measured = [s for s in servers if s.pa_runs]
    if not measured:
        return []
    lines = [
        "",
        f"perf_analyzer (tritonclient {args.pa_version}, pinned to core {args.load_core}, "
        f"stability {args.pa_stability}%): "
        f"{args.rounds} run(s) per server, protocol and concurrency; ours sends `number` "
        f"[1] (the counter's whole answer), MLServer `digits` [1, {len(DIGITS)}] (probabilities "
        "only), each what its model configuration declares.",
        "",
        "| server | protocol | connections | infer/s | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for protocol in args.protocol_list:
        for connections in args.connection_list:
            for server in measured:
                runs = server.pa_runs[(protocol, connections)]
                lines.append(
                    f"| {server.label} | {protocol} | {connections} | "
                    f"{spread([r.rps for r in runs], 0)} | {spread([r.p50_ms for r in runs], 2)} "
                    f"| {spread([r.p99_ms for r in runs], 2)} |"
                )
    mine = next((s for s in measured if s.key == "ours"), None)
    peers = [s for s in measured if s.key != "ours"]
    if mine is None or not peers:
        return lines
    lines += [
        "",
        "| protocol | connections | "
        + " | ".join(f"ours / {p.label} infer/s" for p in peers)
        + " |",
        ("| --- | --- | " + "--- | " * len(peers)).rstrip(),
    ]
    for protocol in args.protocol_list:
        for connections in args.connection_list:
            ratios = " | ".join(f"{_pa_ratio(mine, p, protocol, connections):.2f}x" for p in peers)
            lines.append(f"| {protocol} | {connections} | {ratios} |")
    lines.append("")
    for (key, protocol), goal in PA_GOALS.items():
        peer = next((p for p in peers if p.key == key), None)
        if peer is None or protocol not in args.protocol_list or 16 not in args.connection_list:
            continue
        ratio = _pa_ratio(mine, peer, protocol, 16)
        verdict = "met" if ratio >= goal else "NOT met"
        lines.append(
            f"- perf_analyzer {protocol}, c=16, ours / {peer.label}: {ratio:.2f}x "
            f"(goal >= {goal:g}x): {verdict}"
        )
    return lines


def _pa_ratio(mine: Server, peer: Server, protocol: str, connections: int) -> float:
    ours_rps = statistics.median(r.rps for r in mine.pa_runs[(protocol, connections)])
    peer_rps = statistics.median(r.rps for r in peer.pa_runs[(protocol, connections)])
    return float(ours_rps / peer_rps)


@contextmanager
def running(servers: list[Server]) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            stop(server)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2, help="wrk runs per server and c")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--connections", default="1,16,64", help="comma-separated")
    parser.add_argument("--starts", type=int, default=2, help="fresh starts timed per server")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load")
    parser.add_argument(
        "--servers", default="ours,mlserver,kserve", help="comma-separated: ours,mlserver,kserve"
    )
    parser.add_argument(
        "--venvs", type=Path, default=REPO / ".bench", help="the peers' virtualenvs"
    )
    parser.add_argument(
        "--mlserver-parallel-workers",
        type=int,
        default=0,
        help="MLServer's parallel_workers: 0 (default here) runs the model in its one server "
        "process, as ours and KServe do; MLServer's own default, 1, adds an inference process",
    )
    parser.add_argument(
        "--logs",
        type=Path,
        default=REPO / ".bench" / "logs",
        help="each server's folder and log (emptied at the start)",
    )
    parser.add_argument(
        "--perf-analyzer",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also drive ours and MLServer with Triton's perf_analyzer",
    )
    parser.add_argument("--protocols", default="http,grpc", help="perf_analyzer's: http,grpc")
    parser.add_argument(
        "--pa-stability",
        type=int,
        default=10,
        help="perf_analyzer's stability: three windows within this percent (a busy host needs "
        "more)",
    )
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--load-core", type=int, default=1)
    args = parser.parse_args(argv)
    args.connection_list = [int(c) for c in args.connections.split(",")]
    args.server_list = args.servers.split(",")
    args.protocol_list = args.protocols.split(",")
    if set(args.protocol_list) - {"http", "grpc"}:
        parser.error("protocols are http, grpc")
    unknown = set(args.server_list) - {"ours", "mlserver", "kserve"}
    if unknown or min(args.rounds, args.duration, args.starts) < 1:
        parser.error("servers are ours, mlserver, kserve; rounds, duration, starts >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    python = (
        os.path.relpath(sys.executable)
        if sys.executable.startswith(os.getcwd())
        else sys.executable
    )
    command = shlex.join([python, "-m", "bench.peers", *sys.argv[1:]])
    binary = find_wrk()
    wrk_version = subprocess.run([binary, "-v"], capture_output=True, text=True).stdout
    wrk_version = wrk_version.split(" [")[0].strip() or "wrk"
    tool = find_perf_analyzer(args.venvs) if args.perf_analyzer else None
    if tool is not None:
        args.pa_version = _versions(tool[0].parent / "python", ["tritonclient"]).split()[-1]
    reference = expected()

    work = args.logs
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    servers: list[Server] = []
    for key in args.server_list:
        if key == "ours":
            servers.append(ours(work))
        elif key == "mlserver":
            servers.append(mlserver(work, args.venvs, args.mlserver_parallel_workers))
        else:
            servers.append(kserve(work, args.venvs))
    with running(servers):
        script = work / "infer.lua"
        script.write_text(WRK_SCRIPT)

        # Cold starts, alternating servers; the last start of each stays up for the load.
        for attempt in range(args.starts):
            for server in servers:
                server.starts.append(start(server, args.server_core))
                print(f"{server.label}: ready in {server.starts[-1]:.2f} s", flush=True)
                if attempt < args.starts - 1:
                    stop(server)
        for server in servers:
            check(server, reference)

        steal = Steal.start()
        for connections in args.connection_list:
            for server in servers:
                wrk(binary, args.load_core, script, server, args.warmup, connections)
                server.runs[connections] = []
            for round_ in range(args.rounds):
                shift = round_ % len(servers)  # rotate who goes first
                for server in servers[shift:] + servers[:shift]:
                    run = wrk(binary, args.load_core, script, server, args.duration, connections)
                    server.runs[connections].append(run)
                    print(
                        f"c{connections} round {round_ + 1} {server.label}: {run.rps:.0f} req/s, "
                        f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms, non-2xx {run.non_2xx}, "
                        f"socket errors {run.socket_errors}",
                        flush=True,
                    )
        measured = [s for s in servers if s.key in PA_INPUTS]
        for protocol in args.protocol_list if tool is not None else []:
            for connections in args.connection_list:
                for server in measured:
                    server.pa_runs[(protocol, connections)] = []
                for round_ in range(args.rounds):
                    shift = round_ % len(measured)
                    for server in measured[shift:] + measured[:shift]:
                        assert tool is not None
                        pa = perf_analyzer(
                            tool,
                            args.load_core,
                            server,
                            protocol,
                            args.duration,
                            connections,
                            work,
                            args.pa_stability,
                        )
                        server.pa_runs[(protocol, connections)].append(pa)
                        print(
                            f"perf_analyzer {protocol} c{connections} round {round_ + 1} "
                            f"{server.label}: {pa.rps:.0f} infer/s, p50 {pa.p50_ms:.2f} ms, "
                            f"p99 {pa.p99_ms:.2f} ms",
                            flush=True,
                        )
        stolen = steal.sentence()
        for server in servers:
            assert server.process is not None
            server.rss_mb = rss_mb(server.process.pid)

    print()
    print(report(servers, args, command, wrk_version))
    print(f"\n{stolen}.")


if __name__ == "__main__":
    main()
