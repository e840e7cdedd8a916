"""Ray Serve's cost per request against the direct service, on this machine.

Direct: `python -m app` with COUNTER_WORKERS=1. Ray Serve: a one-node local cluster (tests.ray's,
one CPU, loopback) with deploy/ray/counter_serve.py's deployment at one replica, requests going
through Serve's HTTP proxy, as a client of a Serve deployment would. Both unpinned (the proxy
and the replica are two processes); alternating rounds of wrk (POST /increment, 10 digits,
every step listed); req/s, p50, p99, and server CPU per request: for Ray, every process of the
cluster (the proxy, the replica, the controller, the raylet, the GCS...). One answer from each
is checked to be the same bytes first.

    python -m bench.ray_serve [--rounds 3] [--seconds 5] [--connections 16]
"""

import argparse
import os
import statistics
import sys
import tempfile
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path

from bench.host import Steal
from bench.http import NUMBER, find_wrk, free_port
from bench.workers import Run, script, spread, start, stop, tree, wrk
from tests.ray.cluster import DEPLOY_RAY, Cluster, descendants


def answer(port: int) -> bytes:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/increment",
        data=f'{{"number": "{NUMBER}"}}'.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body: bytes = response.read()
        return body


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    binary = find_wrk()
    import ray
    from ray import serve

    with tempfile.TemporaryDirectory(prefix="rb-", dir="/tmp") as tmp:
        folder = Path(tmp)
        post = script(folder, "post", {"number": NUMBER})
        direct_port, serve_port = free_port(), free_port()
        direct = start(direct_port, folder / "direct.log", 1, [])
        cluster = Cluster(folder)
        runs: dict[str, list[Run]] = {"direct": [], "Ray Serve": []}
        try:
            head = cluster.start_node()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ray.init(address=cluster.address, log_to_driver=False, _node_ip_address="127.0.0.1")
            sys.path.insert(0, str(DEPLOY_RAY))
            import counter_serve

            counter_serve.deploy(serve_port, num_replicas=1)
            assert answer(direct_port) == answer(serve_port), "the answers differ"
            targets: dict[str, tuple[int, Callable[[], list[int]]]] = {
                "direct": (direct_port, lambda: tree(direct.pid)),
                "Ray Serve": (serve_port, lambda: descendants(head.process.pid)),
            }
            steal = Steal.start()
            for port, pids in targets.values():  # warm both
                url = f"http://127.0.0.1:{port}/increment"
                wrk(binary, [], url, post, 1, args.connections, pids())
            for _ in range(args.rounds):
                for name, (port, pids) in targets.items():
                    url = f"http://127.0.0.1:{port}/increment"
                    runs[name].append(
                        wrk(binary, [], url, post, args.seconds, args.connections, pids())
                    )
            stolen = steal.sentence()
        finally:
            if ray.is_initialized():
                serve.shutdown()  # type: ignore[no-untyped-call]
                ray.shutdown()
            cluster.stop()
            stop(direct)
    print(
        f"\n`python -m bench.ray_serve {' '.join(sys.argv[1:])}`: unpinned on "
        f"{len(os.sched_getaffinity(0))} cores, wrk -t1 -c{args.connections}, {args.rounds} "
        f"alternating rounds of {args.seconds} s; medians (min-max). POST /increment, 10 "
        f"digits, every step. Ray Serve: one node, one replica, its HTTP proxy. {stolen}.\n"
    )
    print("| server | req/s | p50 ms | p99 ms | errors | server CPU per request (us) |")
    print("|---|---|---|---|---|---|")
    for name, measured in runs.items():
        print(
            f"| {name} | {spread([r.rps for r in measured], '{:.0f}')} "
            f"| {spread([r.p50_ms for r in measured], '{:.2f}')} "
            f"| {spread([r.p99_ms for r in measured], '{:.2f}')} "
            f"| {sum(r.errors for r in measured)} "
            f"| {spread([r.server_cpu_us for r in measured], '{:.0f}')} |"
        )
    cost = statistics.median(
        s.server_cpu_us / d.server_cpu_us
        for d, s in zip(runs["direct"], runs["Ray Serve"], strict=True)
    )
    rate = statistics.median(
        s.rps / d.rps for d, s in zip(runs["direct"], runs["Ray Serve"], strict=True)
    )
    print(f"\nRay Serve / direct, round by round: CPU per request {cost:.1f}x, req/s {rate:.2f}x")


if __name__ == "__main__":
    main()
