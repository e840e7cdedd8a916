"""Load and overload, with every answer checked: what docs/benchmarks.md's reliability section says.

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

And the hardening scenarios (each asked by name):
- hostile-v2: malformed V2 bodies (parameters not objects, nesting 1000 deep, a lone
  surrogate, a 4 MB shape of huge dimensions): their statuses, and the longest /healthz wait
  beside them (the event loop's longest stall);
- refusals: --clients clients write a 3.5 MB body whole before reading: statuses and resets;
- trickle: two clients trickle large bodies while 40 large requests are sent;
- streams: 100 /count streams never read, and small requests' latency beside them;
- memory: --clients clients send the largest requests the defaults admit on every route,
  half never reading: the peak resident memory; then the worst the limits admit at once (the
  places for large bodies being received all taken but one, and each largest request
  through it): the peak of each;
- drain: SIGTERM under 32 keep-alive clients, 8 /count streams and 4 clients uploading
  bodies slowly (stops the server).

The clients are bench.load_clients'; the hardening scenarios live in bench.load_hostile and
bench.load_drain.

    python -m bench.load [--requests 100000] [--clients 64] [--scenarios steady batches long
                         hostile-v2 refusals trickle streams memory drain]
"""

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

from bench.load_clients import Tally, client, free_port, proc, reset_peak, single, wrong_answers
from bench.load_drain import drain
from bench.load_hostile import hostile_v2, memory, refusals, streams, trickle


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
        "--scenarios",
        nargs="+",
        default=["steady", "batches", "long"],
        help="which to run: steady batches long hostile-v2 refusals trickle streams memory drain "
        "(drain stops the server: it runs last)",
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
        if "hostile-v2" in args.scenarios:
            print(hostile_v2(port))
        if "refusals" in args.scenarios:
            reset_peak(server.pid)
            print(refusals(port, args.clients))
        if "trickle" in args.scenarios:
            print(trickle(port))
        if "streams" in args.scenarios:
            print(streams(port, rng))
        if "memory" in args.scenarios:
            print(memory(server.pid, port, args.clients))
        if "drain" in args.scenarios:
            print(drain(server, port, 32))
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
