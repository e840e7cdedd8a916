"""OpenTelemetry tracing against a real server (`python -m app`), turned on by the standard
OTEL_* variables with the SDK's console exporter, its spans read back from the server's stdout:
each request's span takes the trace id and parent of the client's W3C `traceparent`, with
`parse`, `queue`, `model run` and `answer` under it, for REST /increment, the V2 route and gRPC
ModelInfer; off by default, and a clear refusal when asked for without the packages."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from app import tracing
from tests.app.protowire import field as _field
from tests.app.protowire import varint as _varint
from tests.app.server import free_port

pytestmark = pytest.mark.server
READY_WITHIN_S = 30
LONG = "1" + "9" * 999_999  # about a second in a worker thread: small requests meanwhile batch
SERVICE_NAME = "counter-under-test"


def traceparent(trace: int, parent: int) -> str:
    return f"00-{trace:032x}-{parent:016x}-01"


@dataclass
class Span:
    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    kind: str
    start: str
    end: str
    attributes: dict[str, Any]
    service: str


def read_spans(text: str) -> list[Span]:
    """The console exporter's JSON objects, one per span, one after the other."""
    decoder = json.JSONDecoder()
    spans, at = [], text.find("{")
    while at != -1:
        try:
            found, end = decoder.raw_decode(text, at)
        except ValueError:
            at = text.find("{", at + 1)
            continue
        if isinstance(found, dict) and "context" in found:
            parent = found.get("parent_id")
            spans.append(
                Span(
                    name=found["name"],
                    trace_id=int(found["context"]["trace_id"], 16),
                    span_id=int(found["context"]["span_id"], 16),
                    parent_id=None if parent is None else int(parent, 16),
                    kind=found["kind"],
                    start=found["start_time"],
                    end=found["end_time"],
                    attributes=found.get("attributes") or {},
                    service=found["resource"]["attributes"].get("service.name", ""),
                )
            )
        at = text.find("{", end)
    return spans


class Traced:
    """A running server with tracing on: its base URL, gRPC address, and its stdout's file."""

    def __init__(self, process: "subprocess.Popen[bytes]", base: str, grpc: str, out: Path):
        self.process, self.base, self.grpc, self.out = process, base, grpc, out

    def stop(self) -> list[Span]:
        """SIGTERM; the spans it printed, all of them once it has exited."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=20) == 0
        return read_spans(self.out.read_text())


def start_traced(shipped: Path, folder: Path, **environ: str) -> Traced:
    port, grpc_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "COUNTER_PORT": str(port),
        "COUNTER_GRPC_PORT": str(grpc_port),
        "COUNTER_MODELS_DIR": str(shipped),
        "COUNTER_DRAIN_SECONDS": "0.5",
        "COUNTER_WORKERS": "1",
        "COUNTER_ACCESS_LOG": "false",  # stdout holds the spans alone
        **environ,
    }
    out, err = folder / "stdout", folder / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "app"], env=env, stdout=stdout, stderr=stderr
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_WITHIN_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"the server exited: {err.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"not ready within {READY_WITHIN_S} s")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=1) as ready:
                if ready.status == 200:
                    return Traced(process, base, f"127.0.0.1:{grpc_port}", out)
        except OSError:
            time.sleep(0.05)


def post(base: str, path: str, body: dict[str, Any], parent: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if parent is not None:
        headers["traceparent"] = parent
    sent = urllib.request.Request(base + path, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(sent, timeout=30) as answer:
        return json.loads(answer.read())


def model_infer(number: str) -> bytes:
    """ModelInferRequest for one `number`, as raw bytes: this process loads no generated
    module of the protocol (tests/app/test_grpc.py says why)."""
    shape = _field(3, _varint(1))
    tensor = _field(1, b"number") + _field(2, b"BYTES") + shape
    raw = len(number).to_bytes(4, "little") + number.encode()
    return _field(1, b"counter") + _field(5, tensor) + _field(7, raw)


def tree(spans: list[Span], trace: int) -> tuple[Span, dict[str, list[Span]]]:
    """The trace's one server span and its children by name; every span of the trace is one
    of those."""
    mine = [s for s in spans if s.trace_id == trace]
    (root,) = [s for s in mine if s.kind == "SpanKind.SERVER"]
    children: dict[str, list[Span]] = {}
    for span in mine:
        if span is not root:
            assert span.parent_id == root.span_id, f"{span.name} is not under {root.name}"
            children.setdefault(span.name, []).append(span)
    return root, children


def wait_for_company(base: str) -> None:
    """Until the server holds a request besides the one asking (the long one is in)."""
    while True:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith("counter_requests_in_progress ") and float(line.split()[1]) >= 2:
                    return
        time.sleep(0.01)


@pytest.fixture(scope="module")
def spans(shipped: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Span]:
    """Requests sent with their own traceparents (trace ids 1, 2, ...), the spans read back."""
    folder = tmp_path_factory.mktemp("traced")
    server = start_traced(
        shipped,
        folder,
        OTEL_TRACES_EXPORTER="console",
        OTEL_SERVICE_NAME=SERVICE_NAME,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    try:
        # Alone, a small request runs at once on the event loop: parse, model run, answer.
        post(server.base, "/increment", {"number": "1299"}, traceparent(1, 0xA1))
        # While a long request runs in a worker thread, small ones go through the batcher.
        long = threading.Thread(
            target=post, args=(server.base, "/increment", {"number": LONG}, traceparent(2, 0xA2))
        )
        long.start()
        wait_for_company(server.base)
        v2 = {"inputs": [{"name": "number", "shape": [1], "datatype": "BYTES", "data": ["9"]}]}
        sent = 0
        while long.is_alive() and sent < 200:
            parent = traceparent(100 + sent, 0xB0)
            if sent % 2 == 0:
                post(server.base, "/increment", {"number": "999"}, parent)
            else:
                post(server.base, "/v2/models/counter/infer", v2, parent)
            sent += 1
        long.join()
        with grpc.insecure_channel(server.grpc) as channel:
            call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            call(model_infer("1299"), metadata=[("traceparent", traceparent(3, 0xA3))], timeout=30)
        post(server.base, "/increment", {"number": "5"})  # no traceparent: a trace of its own
    finally:
        found = server.stop()
    return found


def test_a_lone_increment_is_one_request_span_under_the_callers_parent(spans: list[Span]) -> None:
    root, children = tree(spans, 1)
    assert root.name == "POST /increment"
    assert root.parent_id == 0xA1  # the caller's span, from its traceparent
    assert root.attributes["http.response.status_code"] == 200
    assert root.service == SERVICE_NAME  # OTEL_SERVICE_NAME
    assert sorted(children) == ["answer", "model run", "parse"]
    parse, run, answer = children["parse"][0], children["model run"][0], children["answer"][0]
    assert root.start <= parse.start <= parse.end <= run.start <= run.end <= answer.start
    assert answer.end <= root.end


def test_a_run_in_a_worker_thread_has_its_queue_and_model_run(spans: list[Span]) -> None:
    _, children = tree(spans, 2)
    assert sorted(children) == ["answer", "model run", "parse", "queue"]
    assert children["queue"][0].end <= children["model run"][0].start


def test_batched_requests_each_have_the_shared_runs_queue_and_model_run(
    spans: list[Span],
) -> None:
    """Sent while the long request ran; the last may have come after it, alone (no queue)."""
    batched = set()
    for trace in {s.trace_id for s in spans if 100 <= s.trace_id < 1000}:
        root, children = tree(spans, trace)
        assert root.parent_id == 0xB0
        if "queue" not in children:
            assert sorted(children) == ["answer", "model run", "parse"], root.name
            continue
        assert sorted(children) == ["answer", "model run", "parse", "queue"], root.name
        (queue,), (run,) = children["queue"], children["model run"]
        assert queue.end == run.start
        assert run.attributes["counter.batch.requests"] >= 1
        assert run.attributes["counter.batch.rows"] >= 1
        batched.add(root.name)
    assert batched == {"POST /increment", "POST /v2/models/{name}/infer"}


def test_grpc_model_infer_takes_its_parent_from_the_calls_metadata(spans: list[Span]) -> None:
    root, children = tree(spans, 3)
    assert root.name == "inference.GRPCInferenceService/ModelInfer"
    assert root.parent_id == 0xA3
    assert root.attributes["rpc.method"] == "ModelInfer"
    assert sorted(children) == ["answer", "model run", "parse", "queue"]


def test_a_request_without_traceparent_starts_a_trace(spans: list[Span]) -> None:
    roots = [s for s in spans if s.kind == "SpanKind.SERVER" and s.parent_id is None]
    assert [s.name for s in roots] == ["POST /increment"]


def test_off_by_default() -> None:
    """No OTEL_* variable: no tracer, and the process never imports OpenTelemetry's SDK (the
    API alone, which FastAPI imports, makes no span unless called)."""
    assert tracing.exporter_names({}) == []
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing.exporter_names({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}) == ["otlp"]
    asked = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}
    assert tracing.exporter_names(asked) == []
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from app.main import create_app\n"
        "with TestClient(create_app()) as client:\n"
        "    assert client.post('/increment', json={'number': '9'}).status_code == 200\n"
        "from app import tracing\n"
        "sdk = [m for m in sys.modules if m.startswith('opentelemetry.sdk')]\n"
        "print(tracing.TRACER, sdk)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "None []"


def test_an_unknown_exporter_is_refused_naming_the_installed_ones() -> None:
    with pytest.raises(tracing.TracingError, match=r"no trace exporter 'nope'.*console"):
        tracing.configure({"OTEL_TRACES_EXPORTER": "nope"})
    assert tracing.TRACER is None


def test_tracing_asked_without_the_packages_stops_the_start_in_one_line(
    shipped: Path, tmp_path: Path
) -> None:
    """The serving install has OpenTelemetry's API (FastAPI's) and not its SDK: an SDK that
    fails to import stands in, first on the path of the `opentelemetry` namespace."""
    (tmp_path / "opentelemetry" / "sdk").mkdir(parents=True)
    (tmp_path / "opentelemetry" / "sdk" / "__init__.py").write_text("raise ImportError('no')\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()]),
        "COUNTER_MODELS_DIR": str(shipped),
        "COUNTER_PORT": str(free_port()),
        "OTEL_TRACES_EXPORTER": "console",
    }
    done = subprocess.run(
        [sys.executable, "-m", "app"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "ask for tracing (console)" in lines[0]
    assert "pip install 'rnn-counter[tracing]'" in lines[0]
