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
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from bench.host import Steal
from bench.http import find_wrk
from bench.peer_servers import (
    BODY,
    DIGITS,
    INFER,
    NUMBER,
    REPO,
    Run,
    Server,
    _versions,
    check,
    expected,
    kserve,
    mlserver,
    ours,
    rss_mb,
    running,
    spread,
    start,
    stop,
)
from bench.perf_analyzer import PA_INPUTS, find_perf_analyzer, pa_report, perf_analyzer

GOALS = {"mlserver": 3.0, "kserve": 4.0}  # ours / peer, V2 infer req/s at c = 16
P99_GOAL_MS = 20.0  # ours at c = 64

WRK_SCRIPT = f"""-- bench/peers.py: the same V2 infer request for every server
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{BODY}'
"""


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
                            f"p99 {pa.p99_ms:.2f} ms, CPU {pa.cpu_us:.0f} us/request",
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
