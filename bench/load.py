"""Load and overload, with every answer checked: what the reliability section of the README says.

Starts the real server (`python -m app`, default settings) pinned to one core, drives it from
the other with asyncio clients on keep-alive connections, and checks every answer against the
exact n + 1 the client computes itself. Three scenarios:

- steady: 100 000 requests (random numbers of 1-30 digits) from 64 clients: throughput,
  p50/p99 latency, errors, wrong answers, and resident memory before and after;
- batches: 4 clients send the largest batches the limits allow (1024 numbers x 19 digits,
  and 1024 x 1952 digits: 2 million digit steps each) while 8 clients send small requests:
  the small requests' p50/p99 beside their p50/p99 with no batches;
- long: 64 clients send a 10^6-digit number at once: how many are answered and how many
  refused with 503 and Retry-After, and the server's peak resident memory (VmHWM).

    python -m bench.load [--requests 100000] [--clients 64] [--scenarios steady batches long]
"""

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from core.codec import add_one


@dataclass
class Tally:
    """What the clients saw."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    wrong: int = 0
    errors: int = 0

    def add(self, status: int, seconds: float) -> None:
        self.latencies.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000 if ordered else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def reset_peak(pid: int) -> None:
    """Start the process's VmHWM afresh (Linux: 5 > clear_refs), so each scenario's peak is its
    own, not an earlier scenario's."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def proc(pid: int, key: str) -> float:
    """A /proc/<pid>/status figure in MB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: bytes
) -> tuple[int, dict[str, str], bytes]:
    """One request on a keep-alive connection: status, headers, body."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    answer = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, answer


async def client(
    port: int,
    bodies: list[tuple[str, bytes, list[str]]],
    tally: Tally,
    stop: asyncio.Event | None = None,
    deferred: list[tuple[bytes, list[str]]] | None = None,
) -> None:
    """Send each (path, body, numbers) in turn on one connection; check every answer, or keep
    it in `deferred` to be checked after the phase (a big answer decoded here would hold up
    the other clients on this event loop, and their latencies would be the load generator's)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for path, body, numbers in bodies:
            if stop is not None and stop.is_set():
                break
            began = time.perf_counter()
            try:
                status, headers, answer = await exchange(reader, writer, path, body)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                tally.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            tally.add(status, time.perf_counter() - began)
            if status == 200 and deferred is not None:
                deferred.append((answer, numbers))
            elif status == 200:
                tally.wrong += wrong_answers(answer, numbers)
            if headers.get("connection") == "close":
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


def wrong_answers(answer: bytes, numbers: list[str]) -> int:
    """How many of an answer's outputs are not the exact n + 1."""
    decoded = json.loads(answer)
    outputs = [r["output"] for r in decoded.get("results", [decoded])]
    return sum(o != add_one(n) for o, n in zip(outputs, numbers, strict=True))


def single(number: str) -> tuple[str, bytes, list[str]]:
    body = json.dumps({"number": number, "detail": "none"}).encode()
    return "/increment", body, [number]


def steady(port: int, requests: int, clients: int, rng: random.Random) -> Tally:
    tally = Tally()

    def number() -> str:
        length = rng.randint(1, 30)
        return str(rng.randint(10 ** (length - 1), 10**length - 1))

    # requests spread over the clients, the first ones taking one more when it does not divide
    counts = [requests // clients + (i < requests % clients) for i in range(clients)]
    per_client = [[single(number()) for _ in range(count)] for count in counts]

    async def run() -> None:
        await asyncio.gather(*(client(port, bodies, tally) for bodies in per_client))

    asyncio.run(run())
    return tally


def batches(port: int, seconds: float, rng: random.Random) -> tuple[Tally, Tally, Tally]:
    """Small requests alone, then beside 4 batch clients: (alone, beside, the batches)."""
    small = [single(str(rng.randint(0, 10**10))) for _ in range(100_000)]
    alone, beside, heavy = Tally(), Tally(), Tally()
    answered: list[tuple[bytes, list[str]]] = []  # the batches' answers, checked after

    def batch(length: int) -> tuple[str, bytes, list[str]]:
        numbers = [str(rng.randint(10 ** (length - 1), 10**length - 1)) for _ in range(1024)]
        body = json.dumps({"numbers": numbers, "detail": "none"}).encode()
        return "/increment/batch", body, numbers

    wide = [batch(19), batch(1952)]

    async def run(with_batches: bool, tally: Tally) -> None:
        stop = asyncio.Event()
        tasks = [client(port, small[i::8], tally, stop) for i in range(8)]
        if with_batches:
            tasks += [client(port, [wide[i % 2]] * 10_000, heavy, stop, answered) for i in range(4)]
        running = [asyncio.ensure_future(t) for t in tasks]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*running)

    asyncio.run(run(False, alone))
    asyncio.run(run(True, beside))
    heavy.wrong += sum(wrong_answers(answer, numbers) for answer, numbers in answered)
    return alone, beside, heavy


def long_numbers(port: int, clients: int) -> Tally:
    tally = Tally()
    number = "8" * 999_999 + "9"

    async def run() -> None:
        await asyncio.gather(*(client(port, [single(number)], tally) for _ in range(clients)))

    asyncio.run(run())
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15.0, help="per batches phase")
    parser.add_argument(
        "--scenarios", nargs="+", default=["steady", "batches", "long"], help="which to run"
    )
    args = parser.parse_args()
    command = " ".join(["python -m bench.load", *sys.argv[1:]])
    cores = sorted(os.sched_getaffinity(0))
    pin = ["taskset", "-c", str(cores[0])] if len(cores) > 1 else []
    if len(cores) > 1:
        os.sched_setaffinity(0, {cores[1]})  # the clients, on the other core
    port = free_port()
    env = {**os.environ, "COUNTER_PORT": str(port), "COUNTER_ACCESS_LOG": "false"}
    server = subprocess.Popen([*pin, sys.executable, "-m", "app"], env=env)
    rng = random.Random(0)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        print(f"`{command}`: server on core {cores[0]}, clients on the other core.\n")
        if "steady" in args.scenarios:
            before = proc(server.pid, "VmRSS")
            began = time.perf_counter()
            tally = steady(port, args.requests, args.clients, rng)
            elapsed = time.perf_counter() - began
            after = proc(server.pid, "VmRSS")
            print(
                f"steady: {len(tally.latencies):,} requests from {args.clients} clients in "
                f"{elapsed:.1f} s: {len(tally.latencies) / elapsed:,.0f} req/s, p50 "
                f"{tally.percentile(0.5):.2f} ms, p99 {tally.percentile(0.99):.2f} ms, statuses "
                f"{tally.statuses}, connection errors {tally.errors}, wrong answers "
                f"{tally.wrong}; resident memory {before:.0f} -> {after:.0f} MB"
            )
        if "batches" in args.scenarios:
            reset_peak(server.pid)
            alone, beside, heavy = batches(port, args.seconds, rng)
            print(
                f"batches: small requests alone p50 {alone.percentile(0.5):.2f} ms, p99 "
                f"{alone.percentile(0.99):.2f} ms; beside 4 clients sending 1024 x 19 and "
                f"1024 x 1952-digit batches p50 {beside.percentile(0.5):.2f} ms, p99 "
                f"{beside.percentile(0.99):.2f} ms (goal <= 20); batches answered "
                f"{heavy.statuses}, median {statistics.median(heavy.latencies or [0]):.2f} s; "
                f"wrong answers {alone.wrong + beside.wrong + heavy.wrong}; peak resident "
                f"memory {proc(server.pid, 'VmHWM'):.0f} MB"
            )
        if "long" in args.scenarios:
            reset_peak(server.pid)
            tally = long_numbers(port, args.clients)
            print(
                f"long: {args.clients} clients at once with a 10^6-digit number: statuses "
                f"{tally.statuses} (503: refused at once, with Retry-After), wrong answers "
                f"{tally.wrong}; peak resident memory {proc(server.pid, 'VmHWM'):.0f} MB "
                f"(goal <= 400), now {proc(server.pid, 'VmRSS'):.0f} MB"
            )
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
