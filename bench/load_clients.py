"""bench.load's clients: asyncio clients on keep-alive connections that check every answer
against the exact n + 1 (Tally: what they saw), and the server's memory read from /proc."""

import asyncio
import json
import socket
import time
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
