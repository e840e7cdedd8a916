"""Prometheus metrics and the pure-ASGI middleware that times every request.

Exposed at GET /metrics: request latency by route template and status, model-run latency,
digits processed, and refusals by kind. Metrics live in the process-wide default registry, so
they are defined once here, at import.
"""

from time import perf_counter

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The *_created series only add noise for a long-running service.
disable_created_metrics()  # type: ignore[no-untyped-call]

REQUEST_SECONDS = Histogram(
    "counter_http_request_seconds",
    "Time from request start to response start, by route template, method and status.",
    ["route", "method", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MODEL_RUN_SECONDS = Histogram(
    "counter_model_run_seconds",
    "Time of one onnxruntime run (one request or one whole batch), by model.",
    ["model"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)
DIGITS_PROCESSED = Counter(
    "counter_digits_processed",
    "Digits of input numbers answered (without padding or the extra step), by model.",
    ["model"],
)
ERRORS = Counter("counter_errors", "Requests refused or failed, by kind of error.", ["kind"])
MODELS_LOADED = Gauge("counter_models_loaded", "Models loaded, verified and warmed up.")


class MetricsMiddleware:
    """Observe each HTTP request's latency under its route template (never the raw path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        started = False

        def observe(status: int) -> None:
            route = scope.get("route")
            # Unmatched paths share one label so scanners cannot blow up cardinality.
            template = getattr(route, "path", "unmatched")
            REQUEST_SECONDS.labels(template, scope["method"], str(status)).observe(
                perf_counter() - start
            )

        async def send_and_time(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                observe(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_time)
        except Exception:  # not cancellation: nobody is answered then
            # The outer handler (Starlette's ServerErrorMiddleware, outside this one) answers
            # 500; time it here, or failures would be missing from the latency by status.
            if not started:
                observe(500)
            raise
