"""The one middleware every request passes: ids, the body limit, the error shape, metrics,
the access log, and draining. One pure-ASGI layer instead of several, because each layer costs
every request (docs/benchmarks.md says how much).

- Request ids: the client's X-Request-ID when it is short and plain, else a made one
  (app.http.headers, which reads the headers once into the request's state); echoed in the
  X-Request-ID header, in every error body and in the access log line.
- The body limit: a declared Content-Length over COUNTER_MAX_BODY_BYTES is refused at once
  (413, the body unread), a chunked one the moment it passes the limit; never read whole.
- Errors: anything a route raises becomes one reply in the protocol's shape (the counter's
  {"error", "message", "request_id"}, or {"error": message} under /v2), counted by kind; an
  unexpected exception is logged with its traceback and answered 500, never a bare reset.
- Metrics: latency by route template (never the raw path), method and status.
- The access log: one JSON line per request (app.http.access_log).
- Memory: once a request of more than app.process.LARGE_DIGITS digits is answered, and its
  arrays and strings are freed, the allocator's heaps are trimmed (app.process.release).
- Tracing (app.tracing, when the OTEL_* variables turn it on): the request's span, its parent
  the client's `traceparent`, current while the route runs; the probes (/healthz, /readyz,
  /metrics, ...), asked every few seconds, are not traced.
- Draining: after SIGTERM every response says Connection: close, so keep-alive clients
  move to another pod instead of sending on a connection about to close.
- Dispatch: the lean routes (app.http.lean's LeanTable) are called from here directly; every
  other path goes through FastAPI as usual.
"""

import logging
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import process, tracing
from app.errors import Kind, ServiceError, preview
from app.http import access_log, headers
from app.http.headers import STATE
from app.http.lean import LeanTable
from app.metrics import ERRORS, REQUEST_SECONDS
from app.runtime.admission import finish_admission
from app.runtime.traffic import Traffic

log = logging.getLogger(__name__)

_JSON = [(b"content-type", b"application/json")]


def error_body(error: ServiceError, request_id: str, v2: bool) -> bytes:
    """The protocol's error shape."""
    if v2:
        return orjson.dumps({"error": error.message})
    return orjson.dumps(
        {"error": error.kind.label, "message": error.message, "request_id": request_id}
    )


class Edge:
    """The middleware above, in front of the app's own stack (app.http.application)."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        access_log: bool,
        traffic: Traffic,
        lean: LeanTable,
        allowed_hosts: list[str] | None = None,
    ) -> None:
        self.app = app
        # Host header values served, lower-cased; empty: any (COUNTER_ALLOWED_HOSTS)
        self.hosts = frozenset(h.lower().encode("latin-1") for h in allowed_hosts or ())
        self.limit = max_body_bytes
        self.access_log = access_log
        self.traffic = traffic  # requests in flight server-wide, and whether draining
        self.lean = lean

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Call a lean route's endpoint directly, or hand the request to FastAPI."""
        lean = self.lean
        route = lean.exact.get((scope["method"], scope["path"])) or lean.match(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        response = await route.endpoint(Request(scope, receive, send))
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state = scope[STATE] = headers.read(scope["headers"])
        request_id = state.request_id
        v2 = scope["path"].startswith("/v2")
        traced = None
        if tracing.TRACER is not None and scope["path"] not in _PROBES:  # probes: untraced
            traced = tracing.RequestSpan(scope)
        status = 500
        started = False
        limit = self.limit

        async def reply(error: ServiceError) -> None:
            nonlocal status, started
            ERRORS.labels(error.kind.label).inc()
            status, started = error.status, True
            body = error_body(error, request_id, v2)
            headers = [
                *_JSON,
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
                *[(k.encode(), v.encode()) for k, v in error.headers.items()],
            ]
            if error.kind is Kind.BODY_TOO_LARGE or self.traffic.draining:
                headers.append((b"connection", b"close"))
            await send({"type": "http.response.start", "status": error.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _too_large(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode()))
                if self.traffic.draining:  # asked as the answer starts: SIGTERM may have come since
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            declared = state.declared_length
            if declared is not None and declared > limit:
                await reply(_too_large(limit))
            elif self.hosts and scope["path"] not in _PROBES and state.host not in self.hosts:
                await reply(_unknown_host(state.host, self.hosts))
            else:
                await self._dispatch(scope, limited_receive, tracked_send)
        except ServiceError as error:
            if started:
                raise
            await reply(error)
        except Exception as exc:
            log.error("%s %s failed", scope["method"], scope["path"], exc_info=exc)
            if started:
                raise
            await reply(
                ServiceError(Kind.INTERNAL, "the service failed on this request; it is logged")
            )
        finally:
            finish_admission()  # a large request's slot: held until its answer is written
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            _timer(template, scope["method"], status).observe(elapsed)
            if traced is not None:
                traced.end(status, None if route is None else template, request_id)
            if state.digits is not None and state.digits > process.LARGE_DIGITS:
                process.release()  # its arrays and strings are freed now: back to the OS
            if self.access_log:
                # Alone, its line goes out at once: holding it would cost a loop turn and
                # gather no other line to share the write with.
                alone = self.traffic.in_flight == 0
                access_log.write(scope, status, elapsed, state, alone)


# The latency histogram's children by (route template, method, status): a few dozen at most
# (templates are the app's routes, methods the parser's fixed set), each looked up in
# prometheus_client's locked label table once instead of on every request.
_TIMERS: dict[tuple[str, str, int], Any] = {}


def _timer(template: str, method: str, status: int) -> Any:
    key = (template, method, status)
    timer = _TIMERS.get(key)
    if timer is None:
        timer = _TIMERS[key] = REQUEST_SECONDS.labels(template, method, str(status))
    return timer


def _too_large(limit: int) -> ServiceError:
    return ServiceError(
        Kind.BODY_TOO_LARGE,
        f"the request body is larger than {limit} bytes (COUNTER_MAX_BODY_BYTES)",
    )


# Asked by the orchestrator and by Prometheus at the pod's address: any Host.
_PROBES = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})


def _unknown_host(host: bytes, hosts: frozenset[bytes]) -> ServiceError:
    shown = preview(host.decode("latin-1"), 60)
    return ServiceError(
        Kind.UNKNOWN_HOST,
        f"this service does not answer to Host {shown}; it answers to "
        f"{', '.join(sorted(h.decode('latin-1') for h in hosts))} (COUNTER_ALLOWED_HOSTS)",
        {"connection": "close"},
    )
