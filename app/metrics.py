"""Prometheus metrics, exposed at GET /metrics.

Request latency by route template and status (observed by app.http.edge), model-run latency,
digits processed, refusals by kind, refused connections. Metrics live in the process-wide
default registry, so they are defined once here, at import.

Under app.workers, prometheus-client's multiprocess mode is on (PROMETHEUS_MULTIPROC_DIR, set
by the supervisor before a worker starts): each worker writes its values to files there, and
the one answering /metrics reads them all. Counters and histograms add up over the workers,
dead ones included; each gauge says how its workers' values combine (multiprocess_mode).
"""

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

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
MODELS_LOADED = Gauge(
    "counter_models_loaded",
    "Models loaded, verified and warmed up (with several workers: the fewest any worker has).",
    multiprocess_mode="livemin",
)
PENDING_STEPS = Gauge(
    "counter_pending_steps",
    "Digit steps admitted to the worker threads and not finished (COUNTER_MAX_PENDING_STEPS).",
    multiprocess_mode="livesum",
)
REFUSED_CONNECTIONS = Counter(
    "counter_refused_connections",
    "Connections refused at once because COUNTER_MAX_CONNECTIONS were open.",
)
REQUESTS_IN_PROGRESS = Gauge(
    "counter_requests_in_progress",
    "Requests read and not yet answered, over every connection (what decides whether a small "
    "request waits a loop turn for company in a batch). With several workers, their sum, each "
    "sampled every second.",
    multiprocess_mode="livesum",
)


def _registry() -> CollectorRegistry | None:
    """What /metrics reads: every worker's files under multiprocess mode, else None (the
    process's default registry)."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return None
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


_SHARED = _registry()


def exposition() -> bytes:
    """The Prometheus text of every metric, over every worker."""
    return generate_latest(_SHARED) if _SHARED is not None else generate_latest()
