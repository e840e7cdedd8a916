"""uvicorn, with what it lacks against hostile clients and for a clean stop.

uvicorn stays the server (and httptools its parser); this adds, in as small a layer as works:
- a cap on open connections (COUNTER_MAX_CONNECTIONS, and below the process's file limit): a
  connection past it gets a 503 with Retry-After and is closed, and the refusals are logged at
  most once every 10 s, never once per attempt;
- a deadline for a request's headers (COUNTER_HEADER_TIMEOUT_SECONDS), from the connection's
  start or the previous response: a client that connects and sends nothing, or trickles its
  headers, is answered 408 and closed (uvicorn arms its keep-alive timer only after a first
  response, and disarms it on the first byte);
- a cap on the request line and headers (COUNTER_MAX_HEADER_BYTES): past it, 431 and close;
  httptools would otherwise buffer an unterminated header without end;
- one write per response: uvicorn writes a response's status line and headers, then its body,
  in two sends; the transport here holds the head until the body's first write, so a small
  answer leaves in one send (one system call, one TCP segment);
- draining on SIGTERM: /readyz turns 503 at once, new connections are refused, and every
  response on the open ones says Connection: close; once they are gone, or after
  COUNTER_DRAIN_SECONDS, a request whose body is still arriving is refused (503, Retry-After)
  and uvicorn's own graceful shutdown closes what is idle and lets in-flight requests finish.
"""

import asyncio
import logging
import resource
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, cast

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app import process
from app.errors import Kind
from app.metrics import ERRORS, REFUSED_CONNECTIONS, REQUESTS_IN_PROGRESS
from app.runtime.traffic import Traffic
from app.settings import Settings

log = logging.getLogger(__name__)

RESERVED_FILES = 64  # descriptors kept for models, logs and the listener itself
LOG_EVERY_SECONDS = 10.0
COALESCE_BYTES = 64 * 1024  # a body up to this size is sent with its head in one write
LINGER_BODIES = 4  # a refused body is read and dropped up to this many COUNTER_MAX_BODY_BYTES
REFUSED_LINGERING = RESERVED_FILES // 2  # connections refused past the cap that linger at once


def connection_cap(wanted: int) -> int:
    """The connection cap: the setting, or the file limit minus a reserve if that is lower."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - RESERVED_FILES))


class _Throttled:
    """A warning logged at most once every LOG_EVERY_SECONDS, with the count since the last."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.count = 0
        self.last = -LOG_EVERY_SECONDS

    def hit(self) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= LOG_EVERY_SECONDS:
            log.warning(self.message, self.count)
            self.count, self.last = 0, now


def _raw_reply(status: int, reason: str, kind: Kind, message: str, retry: bool = False) -> bytes:
    body = orjson.dumps({"error": kind.label, "message": message})
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry:
        head.append("retry-after: 1")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


class _OneWrite:
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


@dataclass(frozen=True)
class ProtocolLimits:
    """What each connection is held to, from the settings (each named in its refusal)."""

    max_connections: int = 512
    max_header_bytes: int = 32 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    write_timeout: float = 10.0
    linger_bytes: int = 16 * 1024 * 1024  # the most of a refused body read and dropped
    drain_seconds: float = 5.0

    @classmethod
    def of(cls, settings: Settings) -> "ProtocolLimits":
        return cls(
            max_connections=connection_cap(settings.max_connections),
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            write_timeout=settings.write_timeout_seconds,
            linger_bytes=LINGER_BODIES * settings.max_body_bytes,
            drain_seconds=settings.drain_seconds,
        )


class GuardedConfig(uvicorn.Config):
    """uvicorn's Config, with what every GuardedProtocol connection reads: its limits and the
    traffic it counts (requests read and not yet answered, over every connection)."""

    def __init__(self, app: Any, limits: ProtocolLimits, traffic: Traffic, **kwargs: Any) -> None:
        super().__init__(app, http=GuardedProtocol, **kwargs)
        self.limits = limits
        self.traffic = traffic


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the connection cap, header deadline and header cap,
    counting the requests read and not yet answered in the traffic its config names."""

    refusals = _Throttled("refused %d connection(s) past COUNTER_MAX_CONNECTIONS")
    refused_lingering = 0  # connections refused past the cap, reading their request to drop it

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        guarded = cast(GuardedConfig, config)
        self.limits = guarded.limits
        self.traffic = guarded.traffic
        self._header_bytes = 0  # raw bytes received while headers are incomplete
        self._header_size = 0
        self._headers_done = False
        self._message_done = True  # the current request's body has been received whole
        self._next_after_body = False  # answered early: the next headers come after the body
        self._refused = False
        self._header_deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None
        self._write_buffered = 0  # bytes the transport held when the write deadline was armed
        self._discarded = 0  # body bytes read and dropped after a refusal, before closing
        self._open = 0  # this connection's share of traffic.in_flight (pipelining: more than 1)
        self._raw: asyncio.Transport | None = None
        self._lingering = False  # a refusal was sent: the body is read and dropped, then close

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.refusals.hit()
            ERRORS.labels(Kind.OVERLOADED.label).inc()
            REFUSED_CONNECTIONS.inc()
            message = (
                "too many open connections (COUNTER_MAX_CONNECTIONS, "
                f"{self.limits.max_connections}); retry shortly"
            )
            transport.write(_raw_reply(503, "Service Unavailable", Kind.OVERLOADED, message, True))
            self.transport = transport
            self._refused = True
            # Closed at once, a request written whole before reading makes the kernel answer
            # it with a reset that can overtake the 503 (as for the refusals below): the reply
            # is followed by the end of the sending side, and what the client sends is read and
            # dropped until it closes, for the body deadline at most. The descriptors this
            # takes come from the reserve below the file limit, so only so many linger.
            if (
                GuardedProtocol.refused_lingering >= REFUSED_LINGERING
                or not transport.can_write_eof()
            ):
                transport.close()
                return
            GuardedProtocol.refused_lingering += 1
            self._lingering = True
            transport.write_eof()
            self._body_deadline = self.loop.call_later(self.limits.body_timeout, transport.close)
            return
        self._raw = transport
        super().connection_made(cast(asyncio.Transport, _OneWrite(transport, self._linger)))
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._raw is None and self._lingering:  # refused past the cap, lingering
            GuardedProtocol.refused_lingering -= 1
            self._lingering = False
        self.traffic.in_flight -= self._open
        self._open = 0
        self._disarm_header_deadline()
        for timer in (self._body_deadline, self._write_deadline):
            if timer is not None:
                timer.cancel()
        self._body_deadline = self._write_deadline = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """What httptools cannot parse (an unknown method, two Content-Lengths, an HTTP/2
        preface): 400 in the service's JSON error shape, not uvicorn's plain text."""
        ERRORS.labels(Kind.MALFORMED_REQUEST.label).inc()
        message = (
            "the request is not valid HTTP/1.1 (an unknown method, a malformed request line "
            "or header, conflicting lengths, or HTTP/2 without upgrade); see /docs"
        )
        self.transport.write(_raw_reply(400, "Bad Request", Kind.MALFORMED_REQUEST, message))
        cast(_OneWrite, self.transport).flush()
        self._close_now()  # the rest cannot be parsed: nothing to linger for

    # A refusal sent before the body was read (503, 413, 429), on a connection to be closed:
    # closing at once, with the client's body unread, makes the kernel answer it with a reset
    # that can overtake the reply, so the client sees ECONNRESET instead of the status and its
    # Retry-After. Instead the reply is sent, the sending side shut (the client reads the
    # reply and the end), and the rest of the body read and dropped, up to linger_bytes and
    # the body deadline, before the connection is closed.

    def _linger(self) -> bool:
        """On close: linger instead if the current request's body is still coming."""
        raw = self._raw
        if self._message_done or not self._headers_done or raw is None or raw.is_closing():
            return False
        cast(_OneWrite, self.transport).lingering = self._lingering = True
        self._discarded = 0
        if raw.can_write_eof():
            raw.write_eof()
        self.flow.resume_reading()  # paused while the body waited to be read: read to drop it
        self._arm_body_deadline()
        return True

    def stop_body(self) -> None:
        """The drain is over: a request whose body is still arriving could not be run before
        the process stops. It is refused now (503 with Retry-After: nothing of it was done, a
        retry goes to another instance), lingering so that the client reads the refusal, and
        its task ends; left to uvicorn, the graceful shutdown's timeout cancelled it into a 500."""
        raw, cycle = self._raw, self.cycle
        if raw is None or raw.is_closing() or self._message_done or not self._headers_done:
            return
        if cycle is None or cycle.response_started:
            return  # answered early (a refusal, already lingering) or answering
        ERRORS.labels(Kind.NOT_READY.label).inc()
        message = (
            "the service is stopping and the request's body had not arrived "
            f"(COUNTER_DRAIN_SECONDS, {self.limits.drain_seconds:g}); retry"
        )
        raw.write(_raw_reply(503, "Service Unavailable", Kind.NOT_READY, message, True))
        self._refused = True  # the rest of the body is read and dropped, not handed on
        cycle.disconnected = True  # the app's receive() says the client is gone: its task ends
        cycle.message_event.set()
        self._linger()

    def _close_now(self) -> None:
        if self._raw is not None:
            self._raw.close()

    # Deadlines for a body and for a write.

    def _arm_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
        self._body_deadline = self.loop.call_later(self.limits.body_timeout, self._body_late)

    def _body_late(self) -> None:
        self._body_deadline = None
        if self._message_done or self._raw is None or self._raw.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_started and not self._lingering:
            ERRORS.labels(Kind.REQUEST_TIMEOUT.label).inc()
            message = (
                f"the request body did not arrive within {self.limits.body_timeout:g} s "
                "(COUNTER_BODY_TIMEOUT_SECONDS)"
            )
            self._raw.write(_raw_reply(408, "Request Timeout", Kind.REQUEST_TIMEOUT, message))
        self._close_now()

    def pause_writing(self) -> None:
        """The client reads slower than the answer is written: it has this long to take some."""
        super().pause_writing()
        self._arm_write_deadline()

    def resume_writing(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None
        super().resume_writing()

    def _arm_write_deadline(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
        if self._raw is not None:
            self._write_buffered = self._raw.get_write_buffer_size()
        self._write_deadline = self.loop.call_later(self.limits.write_timeout, self._write_late)

    def _write_late(self) -> None:
        self._write_deadline = None
        raw = self._raw
        if raw is None or raw.is_closing():
            return
        if raw.get_write_buffer_size() < self._write_buffered:
            self._arm_write_deadline()  # slow, but taking it: another period
            return
        ERRORS.labels("write_timeout").inc()
        raw.abort()  # nothing written for the whole period: what is held is dropped

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.limits.header_timeout, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        if self.transport.is_closing() or (self.cycle and not self.cycle.response_complete):
            return  # a request is being answered: not this deadline's business
        if self._header_bytes == 0:
            self.transport.close()  # nothing sent at all: just close it
            return
        ERRORS.labels("header_timeout").inc()
        message = (
            f"the request line and headers did not arrive within {self.limits.header_timeout:g} s "
            "(COUNTER_HEADER_TIMEOUT_SECONDS)"
        )
        self.transport.write(_raw_reply(408, "Request Timeout", Kind.INVALID_REQUEST, message))
        self.transport.close()

    def _refuse_headers(self) -> None:
        ERRORS.labels(Kind.HEADERS_TOO_LARGE.label).inc()
        message = (
            f"the request line and headers are larger than {self.limits.max_header_bytes} bytes "
            "(COUNTER_MAX_HEADER_BYTES)"
        )
        reply = _raw_reply(431, "Request Header Fields Too Large", Kind.HEADERS_TOO_LARGE, message)
        self.transport.write(reply)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            if self._raw is None:  # refused past the cap: nothing of it is parsed
                self._discarded += len(data)
                if self._discarded > self.limits.linger_bytes:
                    self.transport.close()
                return
            self._drop(data)
            return
        # Headers still arriving: count raw bytes, so an unterminated header is cut off after
        # one read past the cap (httptools would buffer it whole).
        if not self._headers_done:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._headers_done and not self._message_done and self._body_deadline is None:
            self._arm_body_deadline()  # a body that takes more than one read: it has a deadline
        over = self._header_bytes > self.limits.max_header_bytes
        if not self._headers_done and over and not self.transport.is_closing():
            self._refuse_headers()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_done = False
        self._message_done = False
        self._header_size = 0  # the request line and headers, as parsed
        self._refused = False

    def on_url(self, url: bytes) -> None:
        self._header_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_size += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._header_bytes = 0
        self._disarm_header_deadline()
        if self._header_size > self.limits.max_header_bytes:  # complete, but too large: not served
            self._refused = True
            self._refuse_headers()
            return
        cast(_OneWrite, self.transport).hold = True
        self.traffic.in_flight += 1
        self._open += 1
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def _drop(self, data: bytes) -> None:
        """A lingering connection: the refused body read and dropped, then closed."""
        self._discarded += len(data)
        if self._discarded > self.limits.linger_bytes:
            self._close_now()
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._close_now()

    def on_message_complete(self) -> None:
        self._message_done = True
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None
        if self._lingering:
            self._close_now()  # the refused body is all in: close now
            return
        if self._next_after_body:
            self._expect_headers()
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        cast(_OneWrite, self.transport).flush()  # a head with no body write (HEAD requests)
        if self._open:
            self.traffic.in_flight -= 1
            self._open -= 1
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self._message_done:
            self._expect_headers()
        else:
            # Answered before its body arrived (a refusal that reads no body): the rest of the
            # body is still to come, and uvicorn discards it. Counting it as the next request's
            # headers would answer that request 431.
            self._next_after_body = True

    def _expect_headers(self) -> None:
        self._next_after_body = False
        self._headers_done = False
        self._arm_header_deadline()


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM starts a drain before the usual graceful shutdown."""

    def __init__(self, config: uvicorn.Config, drain_seconds: float, traffic: Traffic) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self.traffic = traffic
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Before the start is complete (models loading) there is nothing to drain.
        if sig != signal.SIGTERM or self._draining or not self.started or not self.drain_seconds:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        log.info("SIGTERM: draining for up to %g s before shutting down", self.drain_seconds)
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(self._begin_drain, sig, frame)

    def _begin_drain(self, sig: int, frame: FrameType | None) -> None:
        """Refuse new connections first (the orchestrator sends them elsewhere), then tell
        the open ones: a client told Connection: close reconnects and finds nobody listening,
        rather than a listener about to vanish with its connection in the backlog."""
        for listener in self.servers:
            listener.close()
        self.traffic.draining = True  # /readyz: 503 from now on, every response: close
        loop = asyncio.get_event_loop()
        self._drain(sig, frame, loop.time() + self.drain_seconds)

    def _drain(self, sig: int, frame: FrameType | None, deadline: float) -> None:
        """Open connections are served, each response saying Connection: close, until none is
        left or the deadline passes. Then uvicorn's own graceful shutdown."""
        loop = asyncio.get_event_loop()
        if self.server_state.connections and loop.time() < deadline:
            loop.call_later(0.05, self._drain, sig, frame, deadline)
            return
        for connection in list(self.server_state.connections):
            if isinstance(connection, GuardedProtocol):
                connection.stop_body()
        super().handle_exit(sig, frame)


def run(
    app: Any, settings: Settings, sock: socket.socket | None = None, traffic: Traffic | None = None
) -> None:
    """Serve the app with uvicorn and the protections above, until SIGTERM or Ctrl-C; on a
    listening socket already opened (app.workers), or on settings.host and port. The traffic
    is the app's (app.main.create_app makes it), counted and drained here."""
    traffic = traffic or Traffic()
    REQUESTS_IN_PROGRESS.set_function(lambda: traffic.in_flight)
    config = GuardedConfig(
        app,
        ProtocolLimits.of(settings),
        traffic,
        host=settings.host,
        port=settings.port,
        # asyncio's own loop, whether or not uvloop is installed (a dev install pulls it in):
        # measured side by side it gave no more requests per second here, and more memory;
        # the service serves no WebSockets.
        loop="asyncio",
        ws="none",
        log_level=settings.log_level,
        # No formatters of uvicorn's own: its lines reach the root logger, which `python -m app`
        # sets to write JSON, one object a line, as the access log does.
        log_config=None,
        access_log=False,  # app.http.access_log writes one JSON line per request instead
        server_header=False,
        # Nothing here reads the client's address or scheme (no URL is built from them, the
        # access log has none): uvicorn's X-Forwarded-* middleware would cost every request.
        proxy_headers=False,
        timeout_keep_alive=int(max(1, settings.idle_timeout_seconds)),
        timeout_graceful_shutdown=int(max(1, settings.max_run_seconds + 1)),
        backlog=256,
    )
    process.serve()  # the collector's threshold and the GIL switch interval, for serving
    DrainingServer(config, settings.drain_seconds, traffic).run(sockets=[sock] if sock else None)
