"""bench.load's hardening scenarios: blocking sockets in threads, each client on its own
connection, as the hostile clients of the review were (malformed V2 bodies, bodies written
whole before reading, trickled bodies, streams never read, the largest requests at once)."""

import asyncio
import json
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench.load_clients import Tally, client, proc, reset_peak, single
from core.codec import add_one


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
