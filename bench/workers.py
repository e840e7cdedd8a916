"""COUNTER_WORKERS measured: one worker against two on this machine, and one core's capacity.

Part 1, workers (unpinned: the servers and wrk share every core, as they would in a pod with
its load balancer): `python -m app` with COUNTER_WORKERS=1 and with 2, both started once,
alternating rounds of wrk (POST /increment, 10 digits, every step listed, access log on, as in
bench.http). Each run: req/s, p50, p99, the server's CPU time per request (the supervisor and
every worker, from /proc) and wrk's own CPU time (it competes with the server for the cores).
Then each worker's memory when ready and after the load: RSS, and PSS and USS from
/proc/PID/smaps_rollup (PSS splits each shared page between the processes mapping it; USS is
what the process alone holds, what a second worker really adds).

Part 2, one core's capacity by request size (`--capacity`): one worker pinned to core 0, wrk
pinned to core 1, each request size at --capacity-connections, then p50/p99 against load
(connections 1, 4, 16, 64) for the 10-digit request: the figures docs/scaling.md's model is
built from.

    python -m bench.workers [--rounds 3] [--seconds 5] [--connections 16,64] [--attribute]
                            [--capacity] [--skip-workers]
"""

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.host import Steal
from bench.http import BATCH, NUMBER, POST_SCRIPT, cores, find_wrk, free_port, read_wrk

READY_WITHIN_S = 60
# (label, body) of each request size in the capacity table.
SIZES: list[tuple[str, dict[str, object]]] = [
    ("10 digits, every step", {"number": NUMBER}),
    ("100 digits, every step", {"number": NUMBER * 10}),
    ("1 000 digits, every step", {"number": NUMBER * 100}),
    ("1 000 digits, detail none", {"number": NUMBER * 100, "detail": "none"}),
    ("50 000 digits, detail none", {"number": NUMBER * 5_000, "detail": "none"}),
]


@dataclass(frozen=True)
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_us: float  # server CPU time (every process of it) per request
    wrk_cpu_share: float  # wrk's CPU time over the run's wall time (1.0: one core all along)


def tree(pid: int) -> list[int]:
    """The process and its children (a supervisor's workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(child) for child in children)]


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def memory(pid: int) -> dict[str, float]:
    """RSS, PSS and USS of one process, MB (smaps_rollup)."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) / 1024
    uss = fields["Private_Clean"] + fields["Private_Dirty"]
    return {"rss": fields["Rss"], "pss": fields["Pss"], "uss": uss}


def start(
    port: int, log: Path, workers: int, pin: list[str], extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "COUNTER_PORT": str(port),
        "COUNTER_WORKERS": str(workers),
        **(extra or {}),
    }
    with log.open("ab") as out:
        server = subprocess.Popen(
            [*pin, sys.executable, "-m", "app"], env=env, stdout=out, stderr=out
        )
    began = time.monotonic()
    while time.monotonic() - began < READY_WITHIN_S:
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as ready:
                if ready.status == 200:
                    return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    sys.exit(f"not ready within {READY_WITHIN_S} s")


def wrk(
    binary: str,
    pin: list[str],
    url: str,
    script: Path,
    seconds: int,
    connections: int,
    pids: list[int],
) -> Run:
    """One wrk run; the server's CPU is that of every process in `pids`."""
    args = [*pin, binary, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    args += ["-s", str(script), url]
    before, children_before = cpu_seconds(pids), resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    wall = time.monotonic() - began
    server_cpu = cpu_seconds(pids) - before
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (children.ru_utime - children_before.ru_utime) + (
        children.ru_stime - children_before.ru_stime
    )
    requests, rps, p50, p99, errors = read_wrk(out)
    return Run(rps, p50, p99, errors, server_cpu / max(requests, 1) * 1e6, wrk_cpu / wall)


def spread(values: list[float], fmt: str) -> str:
    low, mid, high = (fmt.format(v) for v in (min(values), statistics.median(values), max(values)))
    return f"{mid} ({low}-{high})"


def script(folder: Path, name: str, body: dict[str, object] | str) -> Path:
    path = folder / f"{name}.lua"
    text = body if isinstance(body, str) else json.dumps(body)
    path.write_text(POST_SCRIPT % text)
    return path


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGINT)
    server.wait(timeout=60)


def workers_part(binary: str, args: argparse.Namespace, folder: Path) -> None:
    post = script(folder, "post", {"number": NUMBER})
    log = folder / "server.log"
    # On tmpfs, as app.workers puts it (a disk's filesystem makes writes wait for writeback).
    shared = Path(tempfile.mkdtemp(prefix="bench-metrics-", dir="/dev/shm"))
    # (label, COUNTER_WORKERS, extra environment): the third splits the cost of two workers
    # into that of prometheus-client's multiprocess mode and the rest.
    variants = [
        ("1", 1, {}),
        ("2", 2, {}),
        ("1, multiprocess metrics", 1, {"PROMETHEUS_MULTIPROC_DIR": str(shared)}),
    ][: 3 if args.attribute else 2]
    servers: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    for label, n, extra in variants:
        port = free_port()
        servers[label] = (port, start(port, log, n, [], extra))
    runs: dict[tuple[int, str], list[Run]] = {}
    steal = Steal.start()
    try:
        ready = {k: [memory(p) for p in tree(s.pid)] for k, (_, s) in servers.items()}
        for connections in args.connections:
            for port, server in servers.values():  # warm each
                url = f"http://127.0.0.1:{port}/increment"
                wrk(binary, [], url, post, 1, connections, tree(server.pid))
            for _ in range(args.rounds):
                for label, (port, server) in servers.items():
                    url = f"http://127.0.0.1:{port}/increment"
                    run = wrk(binary, [], url, post, args.seconds, connections, tree(server.pid))
                    runs.setdefault((connections, label), []).append(run)
        loaded = {k: [memory(p) for p in tree(s.pid)] for k, (_, s) in servers.items()}
    finally:
        for _, server in servers.values():
            stop(server)
        shutil.rmtree(shared, ignore_errors=True)
    print(
        f"\n`python -m bench.workers {' '.join(sys.argv[1:])}`: unpinned (servers and wrk share "
        f"{len(os.sched_getaffinity(0))} cores), wrk -t1, {args.rounds} alternating rounds of "
        f"{args.seconds} s; medians (min-max). POST /increment, 10 digits, every step. "
        f"{steal.sentence()}; load average {os.getloadavg()[0]:.1f} at the end.\n"
    )
    print(
        "| connections | workers | req/s | p50 ms | p99 ms | errors | server CPU per request (us) "
        "| wrk's CPU (cores) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (connections, label), measured in runs.items():
        print(
            f"| {connections} | {label} | {spread([r.rps for r in measured], '{:.0f}')} "
            f"| {spread([r.p50_ms for r in measured], '{:.2f}')} "
            f"| {spread([r.p99_ms for r in measured], '{:.2f}')} "
            f"| {sum(r.errors for r in measured)} "
            f"| {spread([r.server_cpu_us for r in measured], '{:.0f}')} "
            f"| {spread([r.wrk_cpu_share for r in measured], '{:.2f}')} |"
        )
    for connections in args.connections:
        one = runs[(connections, "1")]
        for label in list(servers)[1:]:
            other = runs[(connections, label)]
            cpu = [b.server_cpu_us / a.server_cpu_us for a, b in zip(one, other, strict=True)]
            rps = [b.rps / a.rps for a, b in zip(one, other, strict=True)]
            print(
                f"\nc = {connections}: workers {label} / 1, round by round: req/s "
                f"{spread(rps, '{:.2f}')}x, server CPU per request {spread(cpu, '{:.2f}')}x"
            )
    print("\nmemory, MB (RSS / PSS / USS) of each process, ready -> after the load:")
    for label, n, _ in variants:
        roles = ["the server"] if n == 1 else ["supervisor"] + [f"worker {i}" for i in range(n)]
        for role, before, after in zip(roles, ready[label], loaded[label], strict=True):
            print(
                f"- workers {label}, {role}: {before['rss']:.0f} / {before['pss']:.0f} / "
                f"{before['uss']:.0f} -> {after['rss']:.0f} / {after['pss']:.0f} / "
                f"{after['uss']:.0f}"
            )


def capacity_part(binary: str, args: argparse.Namespace, folder: Path) -> None:
    server_pin, load_pin, placement = cores()
    log = folder / "capacity.log"
    port = free_port()
    server = start(port, log, 1, server_pin)
    url = f"http://127.0.0.1:{port}/increment"
    sizes: list[tuple[str, Run]] = []
    loads: list[tuple[int, Run]] = []
    steal = Steal.start()
    try:
        for index, (label, body) in enumerate(SIZES):
            path = script(folder, f"size{index}", body)
            wrk(binary, load_pin, url, path, 1, args.capacity_connections, tree(server.pid))
            run = wrk(
                binary,
                load_pin,
                url,
                path,
                args.seconds,
                args.capacity_connections,
                tree(server.pid),
            )
            sizes.append((label, run))
        batch = script(folder, "batch", BATCH)
        batch_url = f"http://127.0.0.1:{port}/increment/batch"
        run = wrk(binary, load_pin, batch_url, batch, args.seconds, 2, tree(server.pid))
        sizes.append(("batch 1024 x 20 digits, detail none (wrk -c2)", run))
        small = script(folder, "small", {"number": NUMBER})
        for connections in (1, 4, 16, 64):
            loads.append(
                (
                    connections,
                    wrk(binary, load_pin, url, small, args.seconds, connections, tree(server.pid)),
                )
            )
    finally:
        stop(server)
    print(
        f"\n`python -m bench.workers {' '.join(sys.argv[1:])}`, capacity of one core: one worker, "
        f"{placement}; {args.seconds} s per run. {steal.sentence()}.\n"
    )
    print(
        f"| request (c = {args.capacity_connections}) | req/s | digits/s | p50 ms | p99 ms "
        "| server CPU per request (us) | errors |"
    )
    print("|---|---|---|---|---|---|---|")
    digits = [10, 100, 1000, 1000, 50_000, 1024 * 20]
    for (label, run), n in zip(sizes, digits, strict=True):
        print(
            f"| {label} | {run.rps:.0f} | {run.rps * n:,.0f} | {run.p50_ms:.2f} | {run.p99_ms:.2f} "
            f"| {run.server_cpu_us:.0f} | {run.errors} |"
        )
    print("\n| connections (10 digits) | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|")
    for connections, run in loads:
        print(
            f"| {connections} | {run.rps:.0f} | {run.p50_ms:.2f} | {run.p99_ms:.2f} "
            f"| {run.errors} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument(
        "--connections", type=lambda text: [int(c) for c in text.split(",")], default=[16, 64]
    )
    parser.add_argument("--capacity", action="store_true", help="also one core's capacity")
    parser.add_argument("--capacity-connections", type=int, default=16)
    parser.add_argument("--skip-workers", action="store_true", help="only the capacity part")
    parser.add_argument(
        "--attribute", action="store_true", help="also one worker with multiprocess metrics"
    )
    args = parser.parse_args()
    binary = find_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_workers:
            workers_part(binary, args, Path(tmp))
        if args.capacity:
            capacity_part(binary, args, Path(tmp))


if __name__ == "__main__":
    main()
