"""HTTP benchmark: POST /increment (10 digits, full steps) against GET /healthz, same process.

Starts the real server (`python -m app`, default settings) on free loopback ports: times
process start to the first /readyz 200 over a few fresh starts, then runs wrk (installed from
Debian if missing) against both endpoints in alternating rounds, same connections and
duration, and prints medians and the ratio of throughputs at each concurrency. Ends with the
server's resident memory: when ready, after the load, after one 10^6-digit request.

    python -m bench.http [--rounds 3] [--seconds 5] [--connections 16,64]
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


def post_long(port: int, digits: int) -> None:
    """One request with a number of `digits` digits (summary detail): peak memory use."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/increment",
        data=b'{"number": "' + b"7" * digits + b'", "detail": "summary"}',
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def median(runs: list[Run], field: str) -> float:
    return float(statistics.median(getattr(r, field) for r in runs))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", default="16,64", help="comma-separated, each run alike")
    parser.add_argument("--starts", type=int, default=5, help="fresh starts timed to /readyz")
    parser.add_argument(
        "--no-access-log", action="store_true", help="turn uvicorn's access log off (default: on)"
    )
    args = parser.parse_args()
    access_log = not args.no_access_log
    binary = find_wrk()

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(POST_SCRIPT % NUMBER)
        log = Path(tmp) / "server.log"
        starts = []
        for _ in range(args.starts):
            port = free_port()
            server, ready_s = start_server(port, log, access_log)
            starts.append(ready_s)
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=15)

        port = free_port()
        server, _ = start_server(port, log, access_log)
        tables: dict[int, tuple[list[Run], list[Run]]] = {}
        try:
            rss_ready = rss_mb(server.pid)
            check_answer(port)
            base = f"http://127.0.0.1:{port}"
            for connections in (int(c) for c in args.connections.split(",")):
                wrk(binary, f"{base}/healthz", None, 1, connections)  # warm both paths
                wrk(binary, f"{base}/increment", script, 1, connections)
                trivial: list[Run] = []
                increment: list[Run] = []
                for _ in range(args.rounds):  # alternate, so both see the same machine load
                    trivial.append(wrk(binary, f"{base}/healthz", None, args.seconds, connections))
                    increment.append(
                        wrk(binary, f"{base}/increment", script, args.seconds, connections)
                    )
                tables[connections] = (trivial, increment)
            rss_loaded = rss_mb(server.pid)
            post_long(port, 1_000_000)
            rss_long = rss_mb(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=15)

    print(
        f"\nwrk -t1, {args.rounds} alternating rounds of {args.seconds} s per endpoint, medians; "
        f"access log {'on, to a file' if access_log else 'off'}"
    )
    print(f"{'endpoint':<38}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    for connections, (trivial, increment) in tables.items():
        for name, runs in (
            (f"c{connections} GET /healthz (trivial)", trivial),
            (f"c{connections} POST /increment (10 digits, full)", increment),
        ):
            print(
                f"{name:<38}{median(runs, 'rps'):>9.0f}{median(runs, 'p50_ms'):>9.2f}"
                f"{median(runs, 'p99_ms'):>9.2f}{sum(r.errors for r in runs):>9}"
            )
        ratio = median(increment, "rps") / median(trivial, "rps")
        print(f"c{connections} throughput /increment : /healthz = {ratio:.2f}x (goal >= 0.7x)")
    print(
        f"process start to /readyz 200: median {statistics.median(starts):.2f} s of "
        f"{len(starts)} starts (goal <= 1 s)"
    )
    print(
        f"resident memory: {rss_ready:.0f} MB ready, {rss_loaded:.0f} MB after the load, "
        f"{rss_long:.0f} MB after one 10^6-digit request (goal <= 100 MB)"
    )


if __name__ == "__main__":
    main()
