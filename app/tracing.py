"""OpenTelemetry tracing, off unless the standard OTEL_* variables ask for it.

Each request is a span (REST: the method and route; gRPC: the call) whose parent is the
caller's W3C `traceparent`, with children: `parse`, `queue` (waiting for a shared batch or a
worker thread), `model run` and `answer`. A batched run serves many requests: each request
that waited gets its own `queue` and `model run` spans, with the run's times and size.

On when OTEL_TRACES_EXPORTER names an exporter other than `none` (`console`, `otlp`, ...; any
installed `opentelemetry_traces_exporter` entry point), or when OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (then `otlp`); OTEL_SDK_DISABLED=true keeps it off.
The SDK itself reads the rest: OTEL_SERVICE_NAME (else `rnn-counter`), OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER, OTEL_PROPAGATORS, OTEL_BSP_*, the exporters' own OTEL_EXPORTER_* settings.

Off, the SDK is not imported and no span object is made: the request path pays a few `TRACER
is None` tests, and the hot paths (/increment, V2 infer, gRPC ModelInfer, a run on the event
loop) branch on it rather than enter even a do-nothing context manager; span() serves the rest.
The packages are the optional `tracing` extra (`pip install 'rnn-counter[tracing]'`).
"""

import os
import time
from collections.abc import Callable, Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from importlib.metadata import entry_points
from typing import Any

TRACER: Any = None  # opentelemetry.trace.Tracer when tracing is on
_PROVIDER: Any = None
_OFF = nullcontext()
NAME = "rnn-counter"


class TracingError(Exception):
    """Tracing is asked for and cannot be had: one line saying why and what to do."""


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The exporters asked for by the OTEL_* variables; empty: tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    asked = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if asked:
        return [n for n in (p.strip() for p in asked.split(",")) if n and n != "none"]
    if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    ):
        return ["otlp"]
    return []


def _exporter(name: str, environ: Mapping[str, str]) -> Any:
    """An exporter by its entry point name; `otlp` over HTTP when the protocol says so."""
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    wanted = "otlp_proto_http" if name == "otlp" and protocol.startswith("http") else name
    found = entry_points(group="opentelemetry_traces_exporter", name=wanted)
    if not found:
        known = sorted(e.name for e in entry_points(group="opentelemetry_traces_exporter"))
        raise TracingError(
            f"OTEL_TRACES_EXPORTER: no trace exporter {wanted!r} is installed; installed: "
            f"{', '.join(known) or 'none'} (otlp: the tracing extra, pip install "
            "'rnn-counter[tracing]')"
        )
    return next(iter(found)).load()()


def configure(environ: Mapping[str, str] | None = None, exporter: Any = None) -> bool:
    """Turn tracing on if the OTEL_* variables (or a given exporter, for tests) ask for it;
    True when on. Once per process: a second call keeps the first one's tracer."""
    global TRACER, _PROVIDER
    if TRACER is not None:
        return True
    environ = os.environ if environ is None else environ
    names = exporter_names(environ)
    if not names and exporter is None:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise TracingError(
            f"the OTEL_* variables ask for tracing ({', '.join(names)}), but OpenTelemetry's "
            "SDK is not installed: pip install 'rnn-counter[tracing]', or unset them"
        ) from None
    exporters = [_exporter(name, environ) for name in names]
    if exporter is not None:
        exporters.append(exporter)
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": NAME}))
    provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_SAMPLER
    for each in exporters:
        provider.add_span_processor(BatchSpanProcessor(each))
    _PROVIDER, TRACER = provider, provider.get_tracer(NAME)
    return True


def shutdown() -> None:
    """Send what is held and stop: at the process's end (the lifespan's exit)."""
    global TRACER, _PROVIDER
    if _PROVIDER is not None:
        _PROVIDER.shutdown()
    TRACER = _PROVIDER = None


def span(name: str) -> AbstractContextManager[Any]:
    """A child span of the current one, or (off) one shared context manager doing nothing."""
    tracer = TRACER
    if tracer is None:
        return _OFF
    started: AbstractContextManager[Any] = tracer.start_as_current_span(name)
    return started


def _parent(carrier: Mapping[str, str]) -> Any:
    from opentelemetry import propagate

    return propagate.extract(carrier)  # W3C traceparent (OTEL_PROPAGATORS)


class RequestSpan:
    """An HTTP request's span, current in its task from start() to end()."""

    __slots__ = ("span", "token")

    def __init__(self, scope: MutableMapping[str, Any]) -> None:
        from opentelemetry import context, trace

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        self.span = TRACER.start_span(
            method,
            context=_parent(headers),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"][:200]},
        )
        self.token = context.attach(trace.set_span_in_context(self.span))

    def end(self, status: int, route: str | None, request_id: str) -> None:
        from opentelemetry import context, trace

        span = self.span
        if route is not None:
            span.update_name(f"{span.name} {route}")
            span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("counter.request_id", request_id)
        if status >= 500:
            span.set_status(trace.StatusCode.ERROR)
        span.end()
        context.detach(self.token)


def traced_call(method: str, call: Callable[[bytes, Any], bytes]) -> Callable[[bytes, Any], bytes]:
    """A gRPC call that runs in its own span (parent: the caller's traceparent metadata);
    the call unchanged when tracing is off, decided once when the server starts."""
    if TRACER is None:
        return call
    from opentelemetry import trace

    name = f"inference.GRPCInferenceService/{method}"

    def traced(raw: bytes, context: Any) -> bytes:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        with TRACER.start_as_current_span(
            name,
            context=_parent(metadata),
            kind=trace.SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": "inference.GRPCInferenceService",
                "rpc.method": method,
            },
        ):
            return call(raw, context)

    return traced


class Waiting:
    """A request waiting in a batcher: its span context, and since when it waits."""

    __slots__ = ("context", "since")

    def __init__(self) -> None:
        from opentelemetry import context

        self.context = context.get_current()
        self.since = time.time_ns()


def waiting() -> Waiting | None:
    """What a batcher keeps of a request joining its batch; None when tracing is off."""
    return None if TRACER is None else Waiting()


def ran(waits: list[Waiting | None], started: int, rows: int) -> None:
    """One batched run is done: a `queue` and a `model run` span under each request it served.
    started: time.time_ns() when the run began."""
    tracer = TRACER
    if tracer is None:
        return
    ended = time.time_ns()
    attributes = {"counter.batch.requests": len(waits), "counter.batch.rows": rows}
    for wait in waits:
        if wait is None:
            continue
        queued = tracer.start_span("queue", context=wait.context, start_time=wait.since)
        queued.end(end_time=started)
        run = tracer.start_span(
            "model run", context=wait.context, start_time=started, attributes=attributes
        )
        run.end(end_time=ended)


def now() -> int:
    """The time a batched run begins, when tracing is on (0 otherwise: no clock read)."""
    return 0 if TRACER is None else time.time_ns()
