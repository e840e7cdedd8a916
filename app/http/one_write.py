"""One write per response: uvicorn writes a response's status line and headers, then its body,
in two sends; the transport here holds the head until the body's first write, so a small answer
leaves in one send (one system call, one TCP segment)."""

import asyncio
from collections.abc import Callable
from typing import Any

COALESCE_BYTES = 64 * 1024  # a body up to this size is sent with its head in one write


class OneWrite:
    """A connection's transport that holds a response's head (uvicorn writes it whole, in one
    write) and sends it with the next write, its body's first part. Bytes are never reordered:
    whatever is held goes out ahead of the next write, at the end of the response, or on close.
    Everything else is the transport's own."""

    def __init__(
        self, transport: asyncio.Transport, linger: Callable[[], bool] = lambda: False
    ) -> None:
        self._transport = transport
        self._held = b""
        self.hold = False  # set when a request's headers are complete: its head comes next
        self._linger = linger  # asked on close: True if the protocol closes later instead
        self.lingering = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held and len(data) <= COALESCE_BYTES:
            data, self._held = self._held + bytes(data), b""
        elif self._held:
            self.flush()  # a large body: two sends rather than a copy of it
        elif self.hold and bytes(data[:13]) != b"HTTP/1.1 100 ":  # 100 Continue: at once
            self.hold, self._held = False, bytes(data)
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held:
            self._transport.write(self._held)
            self._held = b""

    def close(self) -> None:
        self.flush()
        if self.lingering or not self._linger():
            self._transport.close()

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
