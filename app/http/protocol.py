"""GuardedProtocol: uvicorn's httptools protocol, with what it lacks against hostile clients.

- a cap on open connections (ProtocolLimits.max_connections): a connection past it gets a 503
  with Retry-After and is closed, and the refusals are logged at most once every 10 s, never
  once per attempt;
- a deadline for a request's headers (COUNTER_HEADER_TIMEOUT_SECONDS), from the connection's
  start or the previous response: a client that connects and sends nothing, or trickles its
  headers, is answered 408 and closed (uvicorn arms its keep-alive timer only after a first
  response, and disarms it on the first byte);
- a cap on the request line and headers (COUNTER_MAX_HEADER_BYTES): past it, 431 and close;
  httptools would otherwise buffer an unterminated header without end;
- deadlines for a body and for a write, a refusal that lingers to be read rather than reset,
  and each response held for one write (app.http.one_write).
"""

import asyncio
import logging
import time
from typing import Any, cast

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import Kind
from app.http.limits import RESERVED_FILES, ProtocolLimits
from app.http.one_write import OneWrite
from app.metrics import ERRORS, REFUSED_CONNECTIONS
from app.runtime.traffic import Traffic

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 10.0
REFUSED_LINGERING = RESERVED_FILES // 2  # connections refused past the cap that linger at once


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
        super().connection_made(cast(asyncio.Transport, OneWrite(transport, self._linger)))
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
        cast(OneWrite, self.transport).flush()
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
        cast(OneWrite, self.transport).lingering = self._lingering = True
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
        cast(OneWrite, self.transport).hold = True
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
        cast(OneWrite, self.transport).flush()  # a head with no body write (HEAD requests)
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
