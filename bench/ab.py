"""A change measured as a referee would: this tree's server against a git revision's, side by
side in one run.

- The revision is checked out into a temporary git worktree; each server starts from its own
  tree with this virtualenv, pinned to core 0, and wrk runs on core 1 (as in bench.http).
- Rounds alternate base, change, base, change ..., so both see the same machine. Each round
  prints req/s, p50, p99 and the server's CPU time per request; the summary gives medians
  (min-max) and the round-by-round ratios change / base. On a busy host (the stolen CPU is
  printed) the CPU ratio moves less than throughput.

    python -m bench.ab [--base HEAD~1] [--route increment|v2|v2-number|batch|grpc]
                       [--base-route ROUTE] [--connections 64] [--rounds 6] [--seconds 3]

--route grpc drives gRPC ModelInfer with Triton's perf_analyzer instead of wrk, as bench.peers
does (the `number` input, every output; `make peers-env` builds it), on the same two cores.

--base-route gives the base server a route of its own: `--base HEAD --base-route increment
--route v2-number` measures V2's `number` input against /increment for the same number, on the
same code (the CPU ratio is V2's cost over /increment's).
"""

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from bench.host import Steal
from bench.http import (
    BATCH,
    BATCH_DIGITS,
    NUMBER,
    POST_SCRIPT,
    Run,
    cores,
    find_wrk,
    free_port,
    spread,
    start,
    stop,
)
from bench.http import wrk as run_wrk
from bench.peer_servers import BODY, INFER, Server
from bench.perf_analyzer import find_perf_analyzer, perf_analyzer

REPO = Path(__file__).resolve().parents[1]
ROUTES = {
    "increment": ("/increment", json.dumps({"number": NUMBER})),
    "v2": (INFER, BODY),
    # The same number as /increment's, by the V2 `number` input, every output (JSON).
    "v2-number": (
        INFER,
        json.dumps(
            {"inputs": [{"name": "number", "shape": [1], "datatype": "BYTES", "data": [NUMBER]}]}
        ),
    ),
    "batch": ("/increment/batch", BATCH),  # 1024 x 20 digits, detail none
}
GRPC = "grpc"  # ModelInfer by perf_analyzer (bench.perf_analyzer), not a wrk route


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--base", default="HEAD~1", help="the git revision to compare against")
    parser.add_argument("--route", choices=[*sorted(ROUTES), GRPC], default="increment")
    parser.add_argument(
        "--base-route", choices=[*sorted(ROUTES), GRPC], help="the base's route (default: --route)"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    base_route = args.base_route or args.route
    grpc = GRPC in (args.route, base_route)
    if grpc and args.route != base_route:
        parser.error("--route grpc is compared with --route grpc only")
    binary = "" if grpc else find_wrk()
    tool = find_perf_analyzer(REPO / ".bench") if grpc else None
    server_pin, load_pin, placement = cores()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base_tree = work / "base"
        git = ["git", "-C", str(REPO), "worktree"]
        subprocess.run([*git, "add", "--detach", "-q", str(base_tree), args.base], check=True)
        servers = {}
        ports: dict[str, int] = {}
        try:
            for name, tree, route in (
                ("base", base_tree, base_route),
                ("change", REPO, args.route),
            ):
                path, body = ROUTES.get(route, ("", ""))
                script = work / f"{name}.lua"
                script.write_text(POST_SCRIPT % body)
                port, grpc_port = free_port(), free_port()
                settings = {"COUNTER_GRPC_PORT": str(grpc_port)} if grpc else {}
                process, _ = start(
                    "app", port, work / f"{name}.log", server_pin, "/readyz", tree, settings
                )
                servers[name] = (process, f"http://127.0.0.1:{port}{path}", script)
                ports[name] = grpc_port

            def measure(name: str, seconds: int) -> Run:
                process, url, script = servers[name]
                if tool is None:
                    return run_wrk(
                        binary, load_pin, url, script, seconds, args.connections, process.pid
                    )
                return _perf_analyzer(
                    tool, process, ports[name], seconds, args.connections, work, load_pin
                )

            for name in servers:
                measure(name, 1)  # warm
            runs: dict[str, list[Run]] = {"base": [], "change": []}
            steal = Steal.start()
            for round_ in range(args.rounds):
                for name in servers:
                    run = measure(name, args.seconds)
                    runs[name].append(run)
                    print(
                        f"round {round_ + 1} {name}: {run.rps:.0f} req/s, p50 {run.p50_ms:.2f} "
                        f"ms, p99 {run.p99_ms:.2f} ms, CPU {run.cpu_us:.0f} us/request, "
                        f"errors {run.errors}",
                        flush=True,
                    )
            stolen = steal.sentence()
        finally:
            for process, _, _ in servers.values():
                stop(process)
            subprocess.run([*git, "remove", "--force", str(base_tree)], check=False)

    base, change = runs["base"], runs["change"]
    routes = f"--route {args.route}"
    if base_route != args.route:
        routes = f"--base-route {base_route} {routes}"
    what = (
        "gRPC ModelInfer by perf_analyzer (wrk's core)"
        if grpc
        else f"POST {ROUTES[base_route][0]} (base), {ROUTES[args.route][0]} (change)"
    )
    print(
        f"\n`python -m bench.ab --base {args.base} {routes} --connections "
        f"{args.connections} --rounds {args.rounds} --seconds {args.seconds}`: {placement}; "
        f"{what}; medians (min-max).\n{stolen}.\n"
    )
    print("| server | req/s | p50 ms | p99 ms | CPU us per request |")
    print("|---|---|---|---|---|")
    for name, measured in runs.items():
        print(
            f"| {name} | {spread([r.rps for r in measured], '{:.0f}')} "
            f"| {spread([r.p50_ms for r in measured], '{:.2f}')} "
            f"| {spread([r.p99_ms for r in measured], '{:.2f}')} "
            f"| {spread([r.cpu_us for r in measured], '{:.0f}')} |"
        )
    if args.route == "batch":
        for name, measured in runs.items():
            rates = [r.rps * BATCH_DIGITS / 1e6 for r in measured]
            print(f"{name}: {spread(rates, '{:.2f}')} M digits/s")
    pairs = list(zip(base, change, strict=True))
    rps = spread([c.rps / b.rps for b, c in pairs], "{:.2f}")
    cpu = spread([c.cpu_us / b.cpu_us for b, c in pairs], "{:.2f}")
    print(f"\nchange / base, round by round: req/s {rps}x, CPU per request {cpu}x")


def _perf_analyzer(
    tool: tuple[Path, dict[str, str]],
    process: subprocess.Popen[bytes],
    grpc_port: int,
    seconds: int,
    connections: int,
    work: Path,
    pin: list[str],
) -> Run:
    """One perf_analyzer run over gRPC, as bench.peers runs it, read as a wrk Run."""
    server = Server("ours", "ours", [], {}, 0, work, grpc_port=grpc_port)
    server.process = process
    core = int(pin[-1]) if pin else 1
    measured = perf_analyzer(tool, core, server, "grpc", seconds, connections, work, 30)
    return Run(measured.rps, measured.p50_ms, measured.p99_ms, 0, measured.cpu_us)


if __name__ == "__main__":
    main()
