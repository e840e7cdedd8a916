"""The access log: one JSON line per request on stdout (time, method, path, status, duration,
request id, model, digits), with no logging record built for it; the lines of one event-loop
turn go out in one write. Written by app.http.edge once a request is answered."""

import asyncio
import atexit
import os
import time
from contextlib import suppress

import orjson
from starlette.types import Scope

from app.http.headers import RequestState


class Lines:
    """Access lines written once per event-loop turn, the turn's lines in one write: under
    load a turn answers many requests, and a write each cost a measurable share of each
    request's time (docs/benchmarks.md). A line waits at most until the loop's next turn; what is
    still held at exit is written then."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._held: list[bytes] = []
        self._due: asyncio.AbstractEventLoop | None = None  # the loop a flush is due on

    def add(self, line: bytes, now: bool = False) -> None:
        """Hold the line for this loop turn's write, or (now) write it and any held at once."""
        self._held.append(line)
        if now:
            self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop running (called directly): write now
            self.flush()
            return
        if self._due is not loop:  # none due, or due on a loop that has since stopped
            self._due = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        self._due = None
        if not self._held:
            return
        data = memoryview(b"".join(self._held))
        self._held.clear()
        with suppress(OSError):  # stdout closed or full: not worth failing a request for
            while data:
                data = data[os.write(self._fd, data) :]


_LINES = Lines(1)
atexit.register(_LINES.flush)


def write(scope: Scope, status: int, elapsed: float, state: RequestState, now: bool) -> None:
    """The request's line: held for this loop turn's write, or (now) written at once."""
    _LINES.add(
        orjson.dumps(
            {
                "time": time.time(),
                "method": scope["method"],
                "path": scope["path"][:200],
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "request_id": state.request_id,
                "model": state.model,
                "digits": state.digits,
            },
            option=orjson.OPT_APPEND_NEWLINE,
        ),
        now,
    )
