"""A hostile gRPC client on raw HTTP/2 frames (hyperframe and hpack, the parts of the h2
package): ModelInfer calls that send their headers and the first bytes of their message, then
stall, each on a connection of its own.

The calls are opened at a steady pace from one thread, which also reads every connection: it
acknowledges the server's settings and pings as a live client does (so no keepalive can tell it
from an honest one), reads past a GOAWAY (the call may go on after one), and notes when each
call ended: its stream reset or answered (trailers), or its connection closed. Frames are
handled one by one rather than through h2's connection state machine, which takes a GOAWAY as
the connection's end.
"""

import selectors
import socket
import threading
import time

from hpack import Encoder
from hyperframe.frame import (
    DataFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
STREAM = 1
# The first bytes of a ModelInferRequest for "counter", in a gRPC frame (1 byte flag, 4 bytes
# big-endian length, the message) that promises 100 bytes: the rest never comes.
PART = b"\x00" + (100).to_bytes(4, "big") + b"\x0a\x07counter"
HEADER = 9  # an HTTP/2 frame's header


class Tricklers(threading.Thread):
    """`count` trickled calls, one every `every` seconds; then each is watched until it ends,
    for up to `watch` seconds after the last was opened."""

    def __init__(self, port: int, count: int, every: float, watch: float) -> None:
        super().__init__(daemon=True)
        self.port, self.count, self.every, self.watch = port, count, every, watch
        self.opened: list[float] = []
        self.ended: dict[int, float] = {}
        self.opening = threading.Event()  # set while calls are still being opened
        self._selector = selectors.DefaultSelector()

    def held_for(self) -> list[float | None]:
        """Per call, seconds from its opening to its end (None: it had not ended)."""
        return [
            self.ended[i] - opened if i in self.ended else None
            for i, opened in enumerate(self.opened)
        ]

    def run(self) -> None:
        self.opening.set()
        try:
            for _ in range(self.count):
                self._open()
                self._pump(time.monotonic() + self.every)
        finally:
            self.opening.clear()
        until = time.monotonic() + self.watch
        while len(self.ended) < len(self.opened) and time.monotonic() < until:
            self._pump(min(until, time.monotonic() + 0.5))
        for key in list(self._selector.get_map().values()):
            self._close(key.fileobj)  # type: ignore[arg-type]

    def _open(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", MODEL_INFER),
            (":authority", f"127.0.0.1:{self.port}"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        opening = HeadersFrame(STREAM, Encoder().encode(headers), flags=["END_HEADERS"])
        sock.sendall(
            PREFACE
            + SettingsFrame(0).serialize()
            + opening.serialize()
            + DataFrame(STREAM, PART).serialize()
        )
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ, (len(self.opened), bytearray()))
        self.opened.append(time.monotonic())

    def _pump(self, until: float) -> None:
        while (left := until - time.monotonic()) > 0:
            for key, _ in self._selector.select(left):
                call, pending = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                if self._read(sock, pending):
                    continue
                self.ended.setdefault(call, time.monotonic())
                self._close(sock)

    @staticmethod
    def _read(sock: socket.socket, pending: bytearray) -> bool:
        """Read and answer what came; False once the call has ended."""
        try:
            data = sock.recv(65536)
            if not data:
                return False
            pending += data
            while len(pending) >= HEADER:
                frame, length = Frame.parse_frame_header(memoryview(pending[:HEADER]))
                if len(pending) < HEADER + length:
                    break
                frame.parse_body(memoryview(pending[HEADER : HEADER + length]))
                del pending[: HEADER + length]
                if _ends_the_call(frame):
                    return False
                if answer := _acknowledgement(frame):
                    sock.sendall(answer)
        except OSError:
            return False
        return True

    def _close(self, sock: socket.socket) -> None:
        self._selector.unregister(sock)
        sock.close()


def _ends_the_call(frame: Frame) -> bool:
    if frame.stream_id != STREAM:
        return False
    return isinstance(frame, RstStreamFrame) or "END_STREAM" in frame.flags


def _acknowledgement(frame: Frame) -> bytes:
    """What a live HTTP/2 client sends back for this frame (nothing for most)."""
    if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
        return SettingsFrame(0, flags=["ACK"]).serialize()
    if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
        return PingFrame(0, frame.opaque_data, flags=["ACK"]).serialize()
    return b""
