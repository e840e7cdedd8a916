"""Triton's perf_analyzer against ours and MLServer, over HTTP and gRPC (bench.peers runs it):
where the binary is, one run at one concurrency, and the table of what it measured.

perf_analyzer sends every input its model configuration declares that it has data for, and
asks for every output the configuration declares (it has no option to ask for fewer). So ours
is sent `number` [1] and answers the counter's six outputs (the answer, probabilities, carry
run, flags, proof, check), and MLServer `digits` [1, 11] and answers `probabilities` alone:
ours does more work per request (bench.ab's `--route v2-number` against `--route v2` measures
how much), the same number either way. Besides throughput, each run gives the server's CPU
time per request: the load tool shares the machine, so throughput ratios shrink when it
saturates its core, while CPU per request compares the servers' own cost.
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.http import cpu_seconds
from bench.peer_servers import DIGITS, NUMBER, PaRun, Server, _tree, spread

PA_GOALS = {("mlserver", "grpc"): 3.0}  # ours / peer, perf_analyzer infer/s at c = 16
# perf_analyzer's --input-data: what each server's model configuration declares
PA_INPUTS = {
    "ours": {"number": {"content": [NUMBER], "shape": [1]}},
    "mlserver": {"digits": {"content": DIGITS, "shape": [1, len(DIGITS)]}},
}


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
    assert server.process is not None
    cpu_before, began = _cpu(server.process.pid), time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=work)
    cpu, wall = _cpu(server.process.pid) - cpu_before, time.perf_counter() - began
    server.exit_if_dead(f"under perf_analyzer ({protocol}, c{connections})")
    if done.returncode != 0 or not out.exists():
        sys.exit(
            f"perf_analyzer failed against {server.label} ({protocol}): "
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    with out.open() as rows:
        row = next(csv.DictReader(rows))
    rps = float(row["Inferences/Second"])
    return PaRun(
        rps=rps,
        p50_ms=float(row["p50 latency"]) / 1000,
        p99_ms=float(row["p99 latency"]) / 1000,
        # Its requests over the whole run, taken as its measured rate times the run's length:
        # the few seconds of start and stop count as load, alike for every server.
        cpu_us=cpu / (wall * rps) * 1e6,
    )


def _cpu(pid: int) -> float:
    """CPU seconds so far of the process and its descendants (MLServer's workers, if any)."""
    total = 0.0
    for member in _tree(pid):
        try:
            total += cpu_seconds(member)
        except (OSError, IndexError):  # ended since the tree was read
            continue
    return total


def pa_report(servers: list[Server], args: argparse.Namespace) -> list[str]:
    """perf_analyzer's table, its ratios and the gRPC goal."""
    measured = [s for s in servers if s.pa_runs]
    if not measured:
        return []
    lines = [
        "",
        f"perf_analyzer (tritonclient {args.pa_version}, pinned to core {args.load_core}, "
        f"stability {args.pa_stability}%): "
        f"{args.rounds} run(s) per server, protocol and concurrency, alternating; ours is "
        f"sent `number` [1] and answers six outputs (the counter's whole answer), MLServer "
        f"`digits` [1, {len(DIGITS)}] and answers `probabilities` alone: perf_analyzer asks "
        "for every output a model configuration declares. CPU: the server's, per request.",
        "",
        "| server | protocol | connections | infer/s | p50 ms | p99 ms | CPU us/request |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for protocol in args.protocol_list:
        for connections in args.connection_list:
            for server in measured:
                runs = server.pa_runs[(protocol, connections)]
                lines.append(
                    f"| {server.label} | {protocol} | {connections} | "
                    f"{spread([r.rps for r in runs], 0)} | {spread([r.p50_ms for r in runs], 2)} "
                    f"| {spread([r.p99_ms for r in runs], 2)} "
                    f"| {spread([r.cpu_us for r in runs], 0)} |"
                )
    mine = next((s for s in measured if s.key == "ours"), None)
    peers = [s for s in measured if s.key != "ours"]
    if mine is None or not peers:
        return lines
    lines += [
        "",
        "| protocol | connections | "
        + " | ".join(f"ours / {p.label} infer/s | {p.label} / ours CPU per request" for p in peers)
        + " |",
        ("| --- | --- | " + "--- | --- | " * len(peers)).rstrip(),
    ]
    for protocol in args.protocol_list:
        for connections in args.connection_list:
            ratios = " | ".join(
                f"{_pa_ratio(mine, p, protocol, connections):.2f}x | "
                f"{_pa_ratio(p, mine, protocol, connections, 'cpu_us'):.2f}x"
                for p in peers
            )
            lines.append(f"| {protocol} | {connections} | {ratios} |")
    lines.append("")
    for (key, protocol), goal in PA_GOALS.items():
        peer = next((p for p in peers if p.key == key), None)
        if peer is None or protocol not in args.protocol_list or 16 not in args.connection_list:
            continue
        ratio = _pa_ratio(mine, peer, protocol, 16)
        verdict = "met" if ratio >= goal else "NOT met"
        cpu = _pa_ratio(peer, mine, protocol, 16, "cpu_us")
        lines.append(
            f"- perf_analyzer {protocol}, c=16, ours / {peer.label}: {ratio:.2f}x the infer/s "
            f"(goal >= {goal:g}x): {verdict}; {cpu:.2f}x less CPU per request"
        )
    return lines


def _pa_ratio(
    mine: Server, peer: Server, protocol: str, connections: int, measure: str = "rps"
) -> float:
    """The median of a measure (rps, cpu_us) on one server over the other's."""
    ours = statistics.median(getattr(r, measure) for r in mine.pa_runs[(protocol, connections)])
    theirs = statistics.median(getattr(r, measure) for r in peer.pa_runs[(protocol, connections)])
    return float(ours / theirs)
