"""HTTP benchmark: POST /increment (10 digits, full steps) against GET /healthz, same process.

Starts the real server (`python -m app`) on a free loopback port, times process start to the
first /readyz 200, then runs wrk (installed from Debian if missing) against both endpoints in
alternating rounds with the same connections and duration, and prints medians and the ratio
of throughputs. Ends with the server's resident memory after the load.

    python -m bench.http [--rounds 3] [--seconds 5] [--connections 16]
"""

import argparse
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

NUMBER = "1476233999"  # 10 digits, a carry of 3

POST_SCRIPT = """wrk.method = "POST"
wrk.body = '{"number": "%s"}'
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass(frozen=True)
class Run:
    """One wrk run: throughput and latency percentiles (milliseconds)."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(port: int, log: Path, access_log: bool) -> tuple[subprocess.Popen[bytes], float]:
    """Start `python -m app`; return it and the seconds from spawn to /readyz 200."""
    env = {
        **os.environ,
        "COUNTER_PORT": str(port),
        "COUNTER_ACCESS_LOG": str(access_log).lower(),
    }
    start = time.perf_counter()
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "app"], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}/readyz"
    while time.perf_counter() - start < 30:
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return server, time.perf_counter() - start
        except OSError:
            time.sleep(0.005)
    server.kill()
    sys.exit("the server was not ready within 30 s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(binary: str, url: str, script: Path | None, seconds: int, connections: int) -> Run:
    args = [binary, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        args[1:1] = ["-s", str(script)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Run(rps, p50, p99, int(bad.group(1)) if bad else 0)


def check_answer(port: int) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/increment",
        data=f'{{"number": "{NUMBER}"}}'.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
    print(f"POST /increment {NUMBER}: {len(body)} bytes, starts {body[:60]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--no-access-log", action="store_true", help="turn uvicorn's access log off (default: on)"
    )
    args = parser.parse_args()

    binary = find_wrk()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(POST_SCRIPT % NUMBER)
        server, ready_s = start_server(port, Path(tmp) / "server.log", not args.no_access_log)
        try:
            rss_ready = rss_mb(server.pid)
            check_answer(port)
            base = f"http://127.0.0.1:{port}"
            wrk(binary, f"{base}/healthz", None, 1, args.connections)  # warm both paths
            wrk(binary, f"{base}/increment", script, 1, args.connections)
            trivial: list[Run] = []
            increment: list[Run] = []
            for _ in range(args.rounds):
                trivial.append(wrk(binary, f"{base}/healthz", None, args.seconds, args.connections))
                increment.append(
                    wrk(binary, f"{base}/increment", script, args.seconds, args.connections)
                )
            rss_loaded = rss_mb(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=15)

    def median(runs: list[Run], field: str) -> float:
        return float(statistics.median(getattr(r, field) for r in runs))

    print(
        f"\nwrk -t1 -c{args.connections}, {args.rounds} alternating rounds of {args.seconds} s, "
        f"medians (access log {'off' if args.no_access_log else 'on, to a file'})"
    )
    print(f"{'endpoint':<34}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>9}")
    for name, runs in (
        ("GET /healthz (trivial)", trivial),
        ("POST /increment (10 digits, full)", increment),
    ):
        errors = sum(r.errors for r in runs)
        print(
            f"{name:<34}{median(runs, 'rps'):>10.0f}{median(runs, 'p50_ms'):>10.2f}"
            f"{median(runs, 'p99_ms'):>10.2f}{errors:>9}"
        )
    ratio = median(increment, "rps") / median(trivial, "rps")
    print(f"throughput ratio /increment : /healthz = {ratio:.2f}x (goal >= 0.7x)")
    print(f"process start to /readyz 200: {ready_s:.2f} s (goal <= 1 s)")
    print(
        f"resident memory: {rss_ready:.0f} MB when ready, {rss_loaded:.0f} MB after load "
        "(goal <= 100 MB)"
    )


if __name__ == "__main__":
    main()
