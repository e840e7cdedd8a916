"""A change measured as a referee would: this tree's server against a git revision's, side by
side in one run.

- The revision is checked out into a temporary git worktree; each server starts from its own
  tree with this virtualenv, pinned to core 0, and wrk runs on core 1 (as in bench.http).
- Rounds alternate base, change, base, change ..., so both see the same machine. Each round
  prints req/s, p50, p99 and the server's CPU time per request; the summary gives medians
  (min-max) and the round-by-round ratios change / base. On a busy host (the stolen CPU is
  printed) the CPU ratio moves less than throughput.

    python -m bench.ab [--base HEAD~1] [--route increment|v2|v2-number|batch]
                       [--base-route ROUTE] [--connections 64] [--rounds 6] [--seconds 3]

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
from bench.peer_servers import BODY, INFER

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--base", default="HEAD~1", help="the git revision to compare against")
    parser.add_argument("--route", choices=sorted(ROUTES), default="increment")
    parser.add_argument(
        "--base-route", choices=sorted(ROUTES), help="the base's route (default: --route)"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    binary = find_wrk()
    server_pin, load_pin, placement = cores()
    base_route = args.base_route or args.route

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base_tree = work / "base"
        git = ["git", "-C", str(REPO), "worktree"]
        subprocess.run([*git, "add", "--detach", "-q", str(base_tree), args.base], check=True)
        servers = {}
        try:
            for name, tree, route in (
                ("base", base_tree, base_route),
                ("change", REPO, args.route),
            ):
                path, body = ROUTES[route]
                script = work / f"{name}.lua"
                script.write_text(POST_SCRIPT % body)
                port = free_port()
                process, _ = start("app", port, work / f"{name}.log", server_pin, "/readyz", tree)
                servers[name] = (process, f"http://127.0.0.1:{port}{path}", script)
            for process, url, script in servers.values():
                run_wrk(binary, load_pin, url, script, 1, args.connections, process.pid)  # warm
            runs: dict[str, list[Run]] = {"base": [], "change": []}
            steal = Steal.start()
            for round_ in range(args.rounds):
                for name, (process, url, script) in servers.items():
                    run = run_wrk(
                        binary, load_pin, url, script, args.seconds, args.connections, process.pid
                    )
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
    print(
        f"\n`python -m bench.ab --base {args.base} {routes} --connections "
        f"{args.connections} --rounds {args.rounds} --seconds {args.seconds}`: {placement}; "
        f"POST {ROUTES[base_route][0]} (base), {ROUTES[args.route][0]} (change); medians "
        f"(min-max).\n{stolen}.\n"
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


if __name__ == "__main__":
    main()
