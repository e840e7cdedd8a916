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

    python -m bench.load [--requests 100000] [--clients 64] [--scenarios steady batches long
                         hostile-v2 refusals trickle streams memory drain]
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
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
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


# The hardening scenarios: blocking sockets in threads, each client on its own
# connection, as the hostile clients of the review were.


def _post(
    port: int, path: str, body: bytes, headers: str = "", send_buffer: int = 0
) -> tuple[int, dict[str, str], bytes] | str:
    """One request written whole before anything is read: the answer, or the error's name."""
    head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n{headers}\r\n"
    try:
        with socket.socket() as sock:
            if send_buffer:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            sock.settimeout(60)
            sock.connect(("127.0.0.1", port))
            sock.sendall(head.encode() + body)
            data = b""
            while chunk := sock.recv(1 << 20):
                data += chunk
    except OSError as exc:
        return type(exc).__name__
    top, _, answer = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    found = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return int(lines[0].split()[1]), found, answer


def _outcomes(answers: list[tuple[int, dict[str, str], bytes] | str]) -> dict[str, int]:
    counted: dict[str, int] = {}
    for answer in answers:
        key = answer if isinstance(answer, str) else str(answer[0])
        counted[key] = counted.get(key, 0) + 1
    return counted


def _probe(port: int, stop: threading.Event, worst: list[float]) -> None:
    """GET /healthz in a loop beside the attack: the longest wait is the loop's longest stall."""
    while not stop.is_set():
        began = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                while sock.recv(4096):
                    pass
        except OSError:
            continue
        worst[0] = max(worst[0], time.perf_counter() - began)
        time.sleep(0.002)


def hostile_v2(port: int) -> str:
    """Malformed V2 bodies of every kind the review sent, and the stall body, beside a probe."""
    infer = "/v2/models/counter/infer"
    item = {"name": "number", "shape": [1], "datatype": "BYTES", "data": ["1299"]}
    bodies = [
        json.dumps({"inputs": [{**item, "parameters": bad}]}).encode() for bad in ("x", [1], 7)
    ]
    bodies += [
        json.dumps({"inputs": [item], "parameters": "x"}).encode(),
        json.dumps({"inputs": [item], "outputs": [{"name": "output", "parameters": []}]}).encode(),
        b'{"inputs": [{"name": "digits", "shape": [1, 1], "datatype": "INT64", "data": '
        + b"[" * 1000
        + b"1"
        + b"]" * 1000
        + b"}]}",
        b'{"inputs": [{"name": "number", "shape": [1], "datatype": "BYTES", "data": ["\\ud800"]}]}',
        b'{"inputs": [{"name": "digits", "datatype": "INT64", "data": [1], "shape": ['
        + b",".join([b"9" * 4000] * 1040)
        + b"]}]}",
    ]
    stop, worst = threading.Event(), [0.0]
    prober = threading.Thread(target=_probe, args=(port, stop, worst))
    prober.start()
    answers = [_post(port, infer, body) for body in bodies * 5]
    stop.set()
    prober.join()
    return (
        f"hostile V2: {len(answers)} malformed bodies (parameters not objects, nesting 1000 "
        f"deep, a lone surrogate, a 4 MB shape of 1 040 4 000-digit dims): outcomes "
        f"{_outcomes(answers)}; /healthz beside them waited at most {worst[0] * 1000:.0f} ms"
    )


def refusals(port: int, clients: int) -> str:
    """Clients send a 3.5 MB body whole at once (a 32 KB send buffer, as over a network)."""
    body = json.dumps({"number": "7" * 3_500_000, "detail": "none"}).encode()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(
            pool.map(
                lambda _: _post(port, "/increment", body, send_buffer=32 << 10), range(clients)
            )
        )
    retry = sum(1 for a in answers if not isinstance(a, str) and "retry-after" in a[1])
    return (
        f"refusals: {clients} clients each write a 3.5 MB body whole, then read: outcomes "
        f"{_outcomes(answers)} (422: past COUNTER_MAX_DIGITS; 503 with Retry-After: {retry})"
    )


def trickle(port: int) -> str:
    """Two clients trickle large bodies; 40 real 100 000-digit requests meanwhile."""
    socks = []
    for _ in range(2):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            b"POST /increment HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
            b'Content-Length: 200000\r\n\r\n{"number": "'
        )
        socks.append(sock)
    number = "4" * 100_000
    body = json.dumps({"number": number, "detail": "none"}).encode()
    answers = [_post(port, "/increment", body) for _ in range(40)]
    right = sum(
        1
        for a in answers
        if not isinstance(a, str) and a[0] == 200 and json.loads(a[2])["output"] == add_one(number)
    )
    for sock in socks:
        sock.close()
    return (
        f"trickle: 2 clients trickle 200 KB bodies; 40 requests of 100 000 digits meanwhile: "
        f"outcomes {_outcomes(answers)}, {right} right"
    )


def streams(port: int, rng: random.Random) -> str:
    """100 /count streams opened and never read, beside 8 clients of small requests."""
    body = json.dumps({"start": "9" * 3000, "count": 10_000}).encode()
    head = (
        "POST /count HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    opened: list[socket.socket] = []
    statuses: dict[str, int] = {}
    for _ in range(100):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(head + body)
        status = sock.recv(12)[9:12].decode()
        statuses[status] = statuses.get(status, 0) + 1
        opened.append(sock)
    small = [single(str(rng.randint(0, 10**10))) for _ in range(4000)]
    tally = Tally()

    async def run() -> None:
        await asyncio.gather(*(client(port, small[i::8], tally) for i in range(8)))

    asyncio.run(run())
    for sock in opened:
        sock.close()
    return (
        f"streams: 100 /count streams opened and never read: statuses {statuses} (429: past "
        f"COUNTER_MAX_STREAMS, with Retry-After); beside them small requests p50 "
        f"{tally.percentile(0.5):.2f} ms, p99 {tally.percentile(0.99):.2f} ms, wrong "
        f"{tally.wrong}"
    )


def memory(pid: int, port: int, clients: int) -> str:
    """The largest requests the defaults admit, on every route, from `clients` clients at once,
    half of which never read their answers: the server's peak resident memory."""
    rows = ["9" * 1952] * 1024
    v2 = {"inputs": [{"name": "number", "shape": [1024], "datatype": "BYTES", "data": rows}]}
    v2_binary = {**v2, "parameters": {"binary_data_output": True}}
    largest = [
        ("/increment/batch", json.dumps({"numbers": rows, "detail": "none"}).encode()),
        ("/v2/models/counter/infer", json.dumps(v2_binary).encode()),
        ("/increment", json.dumps({"number": "8" * 1_000_000, "detail": "none"}).encode()),
        (
            "/v2/models/counter/infer",
            json.dumps({**v2, "outputs": [{"name": "output"}, {"name": "proved"}]}).encode(),
        ),
    ]
    reset_peak(pid)
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def one(index: int) -> None:
        path, body = largest[index % len(largest)]
        reads = index % 2 == 0
        head = (
            f"POST {path} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            with socket.socket() as sock:
                if not reads:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.settimeout(120)
                sock.connect(("127.0.0.1", port))
                sock.sendall(head + body)
                if reads:
                    key = sock.recv(12)[9:12].decode() or "closed"
                    while sock.recv(1 << 20):
                        pass
                else:
                    time.sleep(30)  # never reads: the write deadline must cut it off
                    key = "unread"
        except OSError as exc:
            key = type(exc).__name__
        with lock:
            outcomes[key] = outcomes.get(key, 0) + 1

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients)))
    crowd = proc(pid, "VmHWM")
    time.sleep(1)  # the last unread answers are cut off and freed
    # The worst the limits admit at once, which a crowd meets only by chance: every place for
    # a large body being received taken by a body of COUNTER_MAX_BODY_BYTES short of its last
    # byte, but one, and through it each largest request in turn, alone and read.
    readers = _fill_reading_places(port, 4 << 20)
    peaks = []
    for path, body in largest:
        reset_peak(pid)
        answer = _post(port, path, body)
        status = answer if isinstance(answer, str) else answer[0]
        peaks.append(f"{path} {status}: {proc(pid, 'VmHWM'):.0f} MB")
    worst = max(float(peak.rsplit(": ", 1)[1].split()[0]) for peak in peaks)
    for sock in readers:
        sock.close()
    return (
        f"memory: {clients} clients at once send the largest requests the defaults admit "
        f"(1024 x 1952-digit batch, the same as V2 with binary or BYTES outputs, a 10^6-digit "
        f"number), half never reading: outcomes {outcomes}; peak resident memory "
        f"{crowd:.0f} MB (goal <= 400), now {proc(pid, 'VmRSS'):.0f} MB. Beside "
        f"{len(readers)} 4 MiB bodies being received (every place for one but the last), each "
        f"alone: {'; '.join(peaks)}: **worst {worst:.0f} MB**"
    )


def _fill_reading_places(port: int, size: int) -> list[socket.socket]:
    """Connections each sending a body of `size` bytes but its last, until the service refuses
    one (503: the places for large bodies being received are taken); that one and one more are
    closed, so one place is left."""
    head = (
        f"POST /increment HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    body = b'{"number": "1"' + b" " * (size - 15)  # its last byte, the closing brace, unsent
    held: list[socket.socket] = []
    for _ in range(1000):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(head + body)
        sock.settimeout(0.5)
        try:
            refused = bool(sock.recv(12))
        except TimeoutError:
            refused = False
        sock.settimeout(60)
        held.append(sock)
        if refused:
            break
    for sock in held[-2:]:
        sock.close()
    time.sleep(0.5)  # the service sees them go
    return held[:-2]


def drain(server: "subprocess.Popen[bytes]", port: int, clients: int) -> str:
    """SIGTERM under keep-alive clients and 8 /count streams: what each request got."""
    outcomes: dict[str, int] = {}
    uploads: dict[str, int] = {}
    ends: list[str] = []
    lock = threading.Lock()
    sent = threading.Event()
    request = single("1299")[1]
    raw = (
        "POST /increment HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(request)}\r\n\r\n"
    ).encode() + request

    def keep_alive() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            reader = sock.makefile("rb")
            while True:
                try:
                    sock.sendall(raw)
                    status = int(reader.readline().split()[1])
                    close = False
                    length = 0
                    while (line := reader.readline()) not in (b"\r\n", b""):
                        name, _, value = line.decode().partition(":")
                        close |= name.lower() == "connection" and "close" in value
                        length = int(value) if name.lower() == "content-length" else length
                    reader.read(length)
                    key = str(status)
                except (OSError, IndexError, ValueError) as exc:
                    key, close = type(exc).__name__, True
                with lock:
                    outcomes[key] = outcomes.get(key, 0) + 1
                sent.set()
                if close:
                    return

    numbers = [str(10**40 + i) for i in range(700)]
    upload_body = json.dumps({"numbers": numbers, "detail": "none"}).encode()  # about 30 KB
    upload_head = (
        "POST /increment/batch HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(upload_body)}\r\n\r\n"
    ).encode()

    def upload() -> None:
        """Bodies sent in 10 pieces over about half a second, one after another."""
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            reader = sock.makefile("rb")
            while True:
                try:
                    sock.sendall(upload_head)
                    for at in range(0, len(upload_body), len(upload_body) // 10 + 1):
                        sock.sendall(upload_body[at : at + len(upload_body) // 10 + 1])
                        time.sleep(0.05)
                    status = int(reader.readline().split()[1])
                    close, length = False, 0
                    while (line := reader.readline()) not in (b"\r\n", b""):
                        name, _, value = line.decode().partition(":")
                        close |= name.lower() == "connection" and "close" in value
                        length = int(value) if name.lower() == "content-length" else length
                    answer = reader.read(length)
                    key = str(status)
                    if status == 200 and wrong_answers(answer, numbers):
                        key = "wrong"
                except (OSError, IndexError, ValueError) as exc:
                    key, close = type(exc).__name__, True
                with lock:
                    uploads[key] = uploads.get(key, 0) + 1
                if close:
                    return

    def stream() -> None:
        body = json.dumps({"start": "1", "count": 10_000}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"POST /count HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            data = b""
            try:
                while chunk := sock.recv(1 << 16):
                    data += chunk
            except OSError as exc:
                data += f"\n{type(exc).__name__}".encode()
        lines = [line for line in data.split(b"\n") if line.startswith(b"{")]
        last = json.loads(lines[-1]) if lines else {}
        with lock:
            ends.append(str(last.get("reason", "no last line")))

    threads = [threading.Thread(target=keep_alive) for _ in range(clients)]
    threads += [threading.Thread(target=stream) for _ in range(8)]
    threads += [threading.Thread(target=upload) for _ in range(4)]
    for thread in threads:
        thread.start()
    sent.wait(30)
    time.sleep(1)
    server.send_signal(signal.SIGTERM)
    code = server.wait(timeout=60)
    for thread in threads:
        thread.join(timeout=30)
    return (
        f"drain: SIGTERM under {clients} keep-alive clients, 8 /count streams and 4 clients "
        f"uploading 30 KB bodies over half a second each: every request sent on a connection "
        f"until it was told to close: {outcomes}; the uploads: {uploads}; the streams' last "
        f"lines: {sorted(ends)}; exit {code}"
    )


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
