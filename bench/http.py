"""HTTP benchmark, as a referee would run it: POST /increment against a minimal FastAPI hello.

- Both servers are the real thing (`python -m app` and `python -m bench.hello`, the hello served
  by the same uvicorn settings, app.http.server.run), started once, pinned to core 0 with taskset;
  wrk runs pinned to core 1 (when the machine has two cores; otherwise unpinned, and it says so).
- Rounds alternate hello, counter, hello, counter ..., so both see the same machine, and each
  figure is the median over rounds with its spread (min-max).
- /increment asks 10 digits with every step and its probabilities (about 3 KB of answer), the
  access log on (JSON lines to a file, as in production to stdout).
- Beside throughput, each server's CPU time per request (from /proc, over each run): on a
  shared host, time stolen from this machine moves req/s far more than it moves CPU per
  request, so the cost ratio says what changed when throughput is noisy.
- Then the batch path (1024 x 20 digits, detail none: digits per second end to end, one batch
  at a time: by wrk on a kept-alive connection, as the rest, and by Python's urllib with a new
  connection each, a slower client), process start to /readyz 200, and resident memory when
  ready, after the load and after one 10^6-digit request.

    python -m bench.http [--rounds 5] [--seconds 5] [--connections 1,16,64]
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.host import Steal, resident

NUMBER = "1476233999"  # 10 digits, a carry of 3
# The batch measured: 1024 numbers of 20 digits, detail none.
BATCH = json.dumps(
    {"numbers": [f"{i:020d}" for i in range(10**19, 10**19 + 1024)], "detail": "none"}
)
BATCH_DIGITS = 1024 * 20
POST_SCRIPT = """wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass(frozen=True)
class Run:
    """One wrk run: throughput, latency percentiles (milliseconds) and the server's CPU time
    per request (microseconds: its user + system time over the run / requests answered)."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float


def find_wrk() -> str:
    """wrk on PATH, or install it from Debian (needs root); exits with a clear message if not."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk from Debian (apt-get install -y wrk) ...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False)
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk not found: install it (Debian: apt-get install wrk) and run again")
    return found


def cores() -> tuple[list[str], list[str], str]:
    """taskset prefixes for the server and for wrk, and how they are placed, in words."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2 or not shutil.which("taskset"):
        return [], [], "unpinned (fewer than 2 cores or no taskset)"
    server, load = str(available[0]), str(available[1])
    return (
        ["taskset", "-c", server],
        ["taskset", "-c", load],
        f"servers on core {server}, wrk on core {load}",
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(
    module: str,
    port: int,
    log: Path,
    pin: list[str],
    ready_path: str,
    tree: Path | None = None,
    settings: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], float]:
    """Start `python -m module` (from source tree `tree`, by default this one; with these
    environment settings too); return it and the seconds from spawn to ready_path 200."""
    env = {**os.environ, **(settings or {}), "COUNTER_PORT": str(port)}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    began = time.perf_counter()
    with log.open("ab") as out:
        server = subprocess.Popen(
            [*pin, sys.executable, "-m", module], env=env, stdout=out, stderr=out, cwd=tree
        )
    url = f"http://127.0.0.1:{port}{ready_path}"
    while time.perf_counter() - began < 60:
        if server.poll() is not None:
            sys.exit(f"{module} exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return server, time.perf_counter() - began
        except OSError:
            time.sleep(0.005)
    server.kill()
    sys.exit(f"{module} was not ready within 60 s")


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGINT)  # no drain: nobody else is waiting
    server.wait(timeout=30)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def read_wrk(out: str) -> tuple[int, float, float, float, int]:
    """wrk --latency's report: requests, req/s, p50 and p99 (ms), non-2xx and socket errors."""
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return requests, rps, p50, p99, errors


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    binary: str,
    pin: list[str],
    url: str,
    script: Path | None,
    seconds: int,
    connections: int,
    server_pid: int,
) -> Run:
    args = [*pin, binary, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        args[len(pin) + 1 : len(pin) + 1] = ["-s", str(script)]
    cpu_before = cpu_seconds(server_pid)
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(server_pid) - cpu_before
    requests, rps, p50, p99, errors = read_wrk(out)
    return Run(rps, p50, p99, errors, cpu / max(requests, 1) * 1e6)


def post(port: int, body: bytes, timeout: float = 60) -> bytes:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/increment",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer: bytes = response.read()
        return answer


def spread(values: list[float], fmt: str) -> str:
    """'median (min-max)'."""
    low, mid, high = (fmt.format(v) for v in (min(values), statistics.median(values), max(values)))
    return f"{mid} ({low}-{high})"


def batch_rate(port: int, rounds: int) -> tuple[float, float, float]:
    """Digits per second for /increment/batch of 1024 x 20 digits, detail none, end to end."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/increment/batch",
        data=BATCH.encode(),
        headers={"Content-Type": "application/json"},
    )
    rates = []
    for _ in range(rounds * 4):
        began = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
        rates.append(BATCH_DIGITS / (time.perf_counter() - began))
    return statistics.median(rates), min(rates), max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", default="1,16,64", help="comma-separated")
    parser.add_argument("--starts", type=int, default=5, help="fresh starts timed to /readyz")
    args = parser.parse_args()
    binary = find_wrk()
    server_pin, load_pin, placement = cores()
    command = " ".join(["python -m bench.http", *sys.argv[1:]])

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(POST_SCRIPT % json.dumps({"number": NUMBER}))
        batch_script = Path(tmp) / "batch.lua"
        batch_script.write_text(POST_SCRIPT % BATCH)
        log = Path(tmp) / "server.log"
        starts = []
        for _ in range(args.starts):
            server, ready_s = start("app", free_port(), log, server_pin, "/readyz")
            starts.append(ready_s)
            stop(server)

        counter_port, hello_port = free_port(), free_port()
        counter, _ = start("app", counter_port, log, server_pin, "/readyz")
        hello, _ = start("bench.hello", hello_port, log, server_pin, "/hello")
        tables: dict[int, tuple[list[Run], list[Run]]] = {}
        steal = Steal.start()
        try:
            rss_ready = resident(counter.pid)
            answer = post(counter_port, json.dumps({"number": NUMBER}).encode())
            assert json.loads(answer)["check"]["correct"], answer[:200]
            ours = f"http://127.0.0.1:{counter_port}/increment"
            theirs = f"http://127.0.0.1:{hello_port}/hello"
            for connections in (int(c) for c in args.connections.split(",")):
                wrk(binary, load_pin, theirs, None, 1, connections, hello.pid)  # warm both
                wrk(binary, load_pin, ours, script, 1, connections, counter.pid)
                baseline: list[Run] = []
                measured: list[Run] = []
                for _ in range(args.rounds):
                    baseline.append(
                        wrk(binary, load_pin, theirs, None, args.seconds, connections, hello.pid)
                    )
                    measured.append(
                        wrk(binary, load_pin, ours, script, args.seconds, connections, counter.pid)
                    )
                tables[connections] = (baseline, measured)
            stolen = steal.sentence()
            rss_loaded = resident(counter.pid)
            batch_url = f"http://127.0.0.1:{counter_port}/increment/batch"
            batches = [
                wrk(binary, load_pin, batch_url, batch_script, args.seconds, 1, counter.pid)
                for _ in range(args.rounds)
            ]
            fresh = batch_rate(counter_port, args.rounds)
            post(counter_port, b'{"number": "' + b"7" * 1_000_000 + b'", "detail": "none"}')
            time.sleep(0.5)
            rss_long = resident(counter.pid)
        finally:
            stop(counter)
            stop(hello)

    print(f"\n`{command}`: {placement}; wrk -t1, {args.rounds} alternating rounds of ")
    print(f"{args.seconds} s each; medians (min-max). POST /increment: 10 digits, every step with")
    print(f"its probabilities ({len(answer)} bytes), access log on. Baseline: a FastAPI hello.")
    print(f"{stolen}.\n")
    print(
        "| connections | hello req/s | /increment req/s | ratio | /increment p50 ms | p99 ms "
        "| errors | server CPU per request, hello / /increment (us) | CPU ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for connections, (baseline, measured) in tables.items():
        ratios = [m.rps / b.rps for m, b in zip(measured, baseline, strict=True)]
        cpu_ratios = [b.cpu_us / m.cpu_us for m, b in zip(measured, baseline, strict=True)]
        errors = sum(r.errors for r in measured + baseline)
        print(
            f"| {connections} | {spread([r.rps for r in baseline], '{:.0f}')} "
            f"| {spread([r.rps for r in measured], '{:.0f}')} "
            f"| {spread(ratios, '{:.2f}')}x "
            f"| {spread([r.p50_ms for r in measured], '{:.2f}')} "
            f"| {spread([r.p99_ms for r in measured], '{:.2f}')} | {errors} "
            f"| {statistics.median(r.cpu_us for r in baseline):.0f} / "
            f"{statistics.median(r.cpu_us for r in measured):.0f} "
            f"| {spread(cpu_ratios, '{:.2f}')}x |"
        )
    print(
        "\nratio: /increment req/s over the hello's, round by round (the goal is 0.8x). CPU ratio:"
        "\nthe hello's server CPU per request over /increment's, the same comparison by cost,"
        "\nwhich a busy host (CPU stolen from the guest) disturbs less than throughput."
    )
    rate, low, high = fresh
    digits_rate = spread([r.rps * BATCH_DIGITS / 1e6 for r in batches], "{:.2f}")
    print(
        "\n/increment/batch 1024 x 20 digits, detail none, end to end, one at a time on a kept-"
        f"alive connection (wrk -c1): {digits_rate}"
        f" M digits/s (goal >= 2), p50 {spread([r.p50_ms for r in batches], '{:.2f}')} ms, server "
        f"CPU {statistics.median(r.cpu_us for r in batches) / 1e3:.2f} ms a batch; from Python's "
        f"urllib, a new connection each: {rate / 1e6:.2f} M ({low / 1e6:.2f}-{high / 1e6:.2f})"
    )
    print(
        f"process start to /readyz 200: median {statistics.median(starts):.2f} s "
        f"({min(starts):.2f}-{max(starts):.2f}) of {len(starts)} starts (goal <= 1 s)"
    )
    print(
        f"resident memory: {rss_ready} ready, {rss_loaded} after the load (goal <= 100 MB), "
        f"{rss_long} after one 10^6-digit request (goal < 110 MB); the file-backed part is "
        "library pages, which the kernel's page cache state moves (see bench.host.Resident)"
    )


if __name__ == "__main__":
    main()
