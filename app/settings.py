"""Service settings: one pydantic-settings class, read once from COUNTER_* environment variables.

The defaults serve the shipped models from the repository's models/ folder on 127.0.0.1:8000,
with limits a small pod (one core, 256 MB) holds.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The repository's models/ folder, next to the app package.
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
WalkedCertificates = Literal["check", "skip"]


class Settings(BaseSettings):
    """Everything an operator can set, each as COUNTER_<NAME> (e.g. COUNTER_MAX_DIGITS=5000)."""

    model_config = SettingsConfigDict(env_prefix="COUNTER_", extra="ignore", frozen=True)

    models_dir: Path = Field(
        default=DEFAULT_MODELS_DIR, description="folder of <name>.onnx + <name>.json"
    )
    default_model: str = Field(
        default="counter", description="model used when a request names none"
    )
    max_model_bytes: int = Field(
        default=64 << 20, ge=1024, description="largest .onnx file the service reads"
    )
    # Input limits (4xx beyond, the setting named in the message).
    max_digits: int = Field(default=1_000_000, ge=1, description="digits per number")
    max_batch_items: int = Field(default=1024, ge=1, description="numbers per batch request")
    max_batch_digits: int = Field(
        default=2_000_000,
        ge=1,
        description="numbers x (longest + 1): the padded size of one batch run",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=64, description="request body size (413)"
    )
    max_answer_bytes: int = Field(
        default=80 << 20,  # the largest batch's probabilities as binary data (2 * 10^6 steps)
        ge=1024,
        description="largest V2 answer: probabilities past it are refused before the run (422)",
    )
    max_detail_digits: int = Field(
        default=10_000, ge=1, description="most digits per request answered with every step listed"
    )
    echo_digits: int = Field(
        default=10_000, ge=64, description="longest input echoed whole in an answer (else cut)"
    )
    max_count: int = Field(default=10_000, ge=1, description="numbers one POST /count may ask")
    max_count_seconds: float = Field(default=60.0, gt=0, description="longest one count streams")
    summary_steps: int = Field(default=5, ge=1, description="least confident steps in a summary")
    low_confidence: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        description="a step whose chosen digit has a lower probability is flagged",
    )
    # Work placement and overload (app.runtime.service).
    worker_threads: int = Field(
        default=1, ge=1, le=64, description="model runs off the event loop at once"
    )
    max_pending_steps: int = Field(
        default=4_000_000,
        ge=1,
        description="digit steps admitted to the workers and not finished; beyond, 503",
    )
    # One: the largest run (a 10^6-digit number, onnxruntime's tensors included) and the
    # largest answer held for a client (a batch's probabilities as binary data) each need a
    # few hundred MB at most, and two at once passed the 400 MB a pod is sized for
    # (docs/benchmarks.md). The runs take the worker thread (COUNTER_WORKER_THREADS) in turn
    # anyway: a second slot mostly held an answer being written.
    max_large_requests: int = Field(
        default=1,
        ge=1,
        description="requests with bodies over 64 KiB held at once, from their arrival to their "
        "answer's last byte",
    )
    max_run_seconds: float = Field(
        default=10.0, gt=0, description="longest a request may wait and run; then it is stopped"
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="processes serving the port (app.workers); default: one per CPU this process "
        "may use (its affinity and cgroup quota)",
    )
    # Connections (app.http.limits).
    max_connections: int = Field(default=512, ge=1, description="open connections at once")
    max_header_bytes: int = Field(
        default=32 * 1024, ge=1024, le=1 << 20, description="request line and headers (431)"
    )
    header_timeout_seconds: float = Field(
        default=10.0, gt=0, le=600, description="time to send a request's headers"
    )
    idle_timeout_seconds: float = Field(
        default=5.0, gt=0, le=600, description="keep-alive: an idle connection is closed after"
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="time to send a request's body once its headers are in; then 408 and close",
    )
    write_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="a response write that makes no progress this long closes the connection",
    )
    max_streams: int = Field(
        default=16, ge=1, description="POST /count streams at once; beyond, 429 with Retry-After"
    )
    # Empty: any Host. The service builds nothing from the Host header (no redirect, no URL)
    # and sets no cookie, and behind a Service or an ingress the names it is reached by are
    # the orchestrator's to choose; a developer's laptop may list its own to shut out DNS
    # rebinding, e.g. COUNTER_ALLOWED_HOSTS='["127.0.0.1:8000", "localhost:8000"]'.
    allowed_hosts: list[str] = Field(
        default=[], description="Host header values served (host or host:port); empty: any"
    )
    drain_seconds: float = Field(
        default=5.0, ge=0, description="on SIGTERM: serve on, saying Connection: close, this long"
    )
    # The Open Inference Protocol over gRPC (app.grpc): off unless a port is set.
    grpc_port: int | None = Field(
        default=None, ge=1, le=65535, description="gRPC port (V2 protocol); unset: no gRPC"
    )
    grpc_max_message_bytes: int = Field(
        default=4 * 1024 * 1024, ge=64, description="a gRPC request message's size"
    )
    grpc_max_streams: int = Field(
        default=256, ge=1, description="concurrent calls on one gRPC connection (HTTP/2 streams)"
    )
    grpc_max_calls: int = Field(
        default=512, ge=1, description="gRPC calls in progress at once, over every connection"
    )
    grpc_message_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="time a gRPC call has to send its request message: every connection is asked "
        "to move on (GOAWAY) after about this long, and closed this long plus "
        "COUNTER_MAX_RUN_SECONDS later, ending the calls still on it",
    )
    grpc_batch_window_ms: float = Field(
        default=2.0,
        ge=0,
        le=100,
        description="while gRPC calls share model runs, the longest a run waits for more (0: "
        "none); it starts sooner once as many calls are queued as the largest recent run took",
    )
    # The model repository (app.runtime.repository), as Triton's model control modes.
    model_control: Literal["none", "explicit", "poll"] = Field(
        default="none",
        description="none: the models of the start; explicit: load/unload on request; "
        "poll: the models folder is watched",
    )
    model_poll_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="poll: how often the models folder is read"
    )
    max_model_versions: int = Field(
        default=2,
        ge=1,
        description="versions of a model served at once: a reload of a new version keeps the "
        "ones before it at /v2/models/{name}/versions/{version}, the oldest dropped past this",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="the bearer token repository load/unload need; unset: they are off (403)",
    )
    # A walked certificate (core.walk, steps > 1) takes about half a second of CPU to check
    # (counter-post's, docs/benchmarks.md), not milliseconds; skip serves its model as proving
    # only what was checked.
    walked_certificates: WalkedCertificates = Field(
        default="check",
        description="check: a model's walked certificate is checked at load, before it is ready; "
        "skip: it is not, and the model is served as proving nothing from it",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: LogLevel = "info"
    access_log: bool = Field(default=True, description="one JSON line per request on stdout")
