"""The Open Inference Protocol over gRPC, against a real server (`python -m app` with
COUNTER_GRPC_PORT): tritonclient's gRPC client (sync and asyncio) and KServe's
InferenceGRPCClient get the same answers, flags and `proved` as REST; refusals are statuses
that say what was wrong, and a hostile client gets no INTERNAL or UNKNOWN.

The clients run in processes of their own (tests/app/grpc_clients.py): tritonclient's and
KServe's generated modules register the same protobuf names, which one process cannot hold
twice. Calls this module makes itself go over a channel of plain bytes (no generated code).
"""

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.codec import add_one, encode_batch
from tests.app.protowire import field as _field
from tests.app.protowire import varint as _varint
from tests.app.server import free_port, start_server, stop_server

pytestmark = pytest.mark.server
NUMBERS = ["1299", "0", "99999999", "1476233999", "9" * 40, "007"]
MESSAGE_CAP = 65536
LONG = "1" + "9" * 999_999  # a second or so of work: calls that overlap
SERVICE = "/inference.GRPCInferenceService/"


class Served:
    def __init__(self, base: str, address: str) -> None:
        self.base, self.address = base, address


@pytest.fixture(scope="module")
def served(shipped: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    port = free_port()
    log = tmp_path_factory.mktemp("grpc") / "server.log"
    server, base = start_server(
        shipped,
        log,
        COUNTER_GRPC_PORT=str(port),
        COUNTER_GRPC_MAX_MESSAGE_BYTES=str(MESSAGE_CAP),
    )
    yield Served(base, f"127.0.0.1:{port}")
    stop_server(server)


def run_client(client: str, address: str, job: dict[str, Any]) -> dict[str, Any]:
    """What `client` got for `job` (see tests/app/grpc_clients.py)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.app.grpc_clients", client, address],
        input=json.dumps(job).encode(),
        capture_output=True,
        timeout=120,
        check=True,
    )
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def rest(base: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(base + path, data, headers)) as reply:
        return json.loads(reply.read())


def rest_outputs(base: str, model: str, tensor: dict[str, Any]) -> dict[str, list[Any]]:
    answer = rest(base, f"/v2/models/{model}/infer", {"inputs": [tensor]})
    return {o["name"]: o["data"] for o in answer["outputs"]}


def same_outputs(got: dict[str, list[Any]], wanted: dict[str, list[Any]]) -> None:
    assert set(got) == set(wanted)
    for name, values in wanted.items():
        if name == "probabilities":  # the same model on the same machine; batching pads
            np.testing.assert_allclose(got[name], values, rtol=1e-6, atol=1e-7)
        else:
            assert got[name] == values, name


CLIENTS = ["triton", "triton-aio", "kserve"]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("model", ["counter", "counter-post"])
def test_clients_get_the_counters_answers_as_rest_gives_them(
    served: Served, client: str, model: str
) -> None:
    job = {"model": model, "input": "number", "data": NUMBERS, "id": "g-1", "binary": True}
    got = run_client(client, served.address, job)
    assert "error" not in got, got
    assert got["live"]
    assert got["ready"]
    assert got["model_ready"]
    wanted = rest_outputs(
        served.base, model, {"name": "number", "shape": [6], "datatype": "BYTES", "data": NUMBERS}
    )
    same_outputs(got["outputs"], wanted)
    right = [out == add_one(n) for out, n in zip(got["outputs"]["output"], NUMBERS, strict=True)]
    assert got["outputs"]["correct"] == right  # the exact check, as over REST
    if model == "counter":
        assert all(right)
    assert got["id"] == "g-1"
    assert got["shapes"]["probabilities"] == [6, 41, 10]
    assert got["datatypes"]["proved"] == "BOOL"
    if model == "counter-post":  # the unproved model says so, as over REST
        assert got["outputs"]["proved"] == [False] * 6


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("binary", [True, False])
def test_clients_run_the_raw_contract_with_raw_or_typed_contents(
    served: Served, client: str, binary: bool
) -> None:
    digits = encode_batch(NUMBERS[:4])
    job = {
        "model": "counter",
        "input": "digits",
        "data": digits.ravel().tolist(),
        "shape": list(digits.shape),
        "binary": binary,
    }
    got = run_client(client, served.address, job)
    assert "error" not in got, got
    tensor = {
        "name": "digits",
        "shape": list(digits.shape),
        "datatype": "INT64",
        "data": digits.ravel().tolist(),
    }
    same_outputs(got["outputs"], rest_outputs(served.base, "counter", tensor))
    assert got["shapes"]["probabilities"] == [*digits.shape, 10]


def test_metadata_is_the_rest_metadata(served: Served) -> None:
    job = {"model": "counter", "input": "number", "data": ["1"], "outputs": ["output"]}
    got = run_client("triton", served.address, job)
    rest_metadata = rest(served.base, "/v2/models/counter")
    # The protocol's gRPC ModelMetadataResponse has no parameters field: REST's carries the
    # model's proved carry length there, and everything else is the same.
    assert rest_metadata.pop("parameters")["reliable_carry_length"] == "unbounded"
    assert got["metadata"] == rest_metadata
    server = rest(served.base, "/v2")
    assert got["server"] == server
    assert got["outputs"] == {"output": ["2"]}


def test_model_config_is_the_rest_config(served: Served) -> None:
    """Triton's ModelConfig, read by tritonclient with Triton's own model_config.proto (what
    perf_analyzer asks first over gRPC), says what GET /v2/models/{name}/config says."""
    job = {"model": "counter", "input": "number", "data": ["1"], "outputs": ["output"]}
    config = run_client("triton", served.address, job)["config"]
    rest_config = rest(served.base, "/v2/models/counter/config")
    assert rest_config.pop("max_batch_size") == 0  # protobuf's JSON leaves out a zero
    for tensor in config["input"] + config["output"]:
        tensor["dims"] = [int(d) for d in tensor["dims"]]  # int64 in protobuf's JSON: strings
    assert config == rest_config
    assert [(t["name"], t["optional"]) for t in config["input"]] == [
        ("digits", True),
        ("number", True),
    ]


@pytest.mark.parametrize(
    ("job", "code", "message"),
    [
        ({"model": "nope"}, "NOT_FOUND", "no model named 'nope'"),
        ({"data": ["12a"]}, "INVALID_ARGUMENT", "contains 'a', which is not a digit"),
        ({"outputs": ["logits"]}, "INVALID_ARGUMENT", "output 'logits' is not given"),
        ({"data": ["1" * MESSAGE_CAP]}, "RESOURCE_EXHAUSTED", "COUNTER_GRPC_MAX_MESSAGE_BYTES"),
    ],
)
def test_refusals_are_statuses_with_the_rest_message(
    served: Served, job: dict[str, Any], code: str, message: str
) -> None:
    full = {"model": "counter", "input": "number", "data": ["1"], **job}
    got = run_client("triton", served.address, full)
    assert got["error"]["code"] == f"StatusCode.{code}"
    assert message in got["error"]["message"]


# A malformed request, built on the wire: protobuf fields by number, with any wire type,
# any value, and the message shapes of ModelInferRequest (model, inputs, contents, outputs).


def _packed(number: int, values: list[int]) -> bytes:
    return _field(number, b"".join(_varint(v) for v in values))


def _bytes_elements(values: list[bytes]) -> bytes:
    return b"".join(len(v).to_bytes(4, "little") + v for v in values)


texts = st.one_of(
    st.sampled_from([b"counter", b"counter-post", b"digits", b"number", b"INT64", b"BYTES", b""]),
    st.text(max_size=12).map(str.encode),
)
names = st.sampled_from([b"counter", b"counter", b"counter-post", b"nope"])
ints = st.one_of(st.integers(-3, 12), st.integers(-(2**63), 2**63 - 1))
contents = st.one_of(
    st.lists(ints, max_size=12).map(lambda v: _packed(3, v)),
    st.lists(st.sampled_from([b"41", b"9" * 30, b"", b"x", b"\xff"]), max_size=6).map(
        lambda v: b"".join(_field(8, x) for x in v)
    ),
    st.just(b""),
)
tensor = st.builds(
    lambda name, datatype, shape, body: (
        _field(1, name) + _field(2, datatype) + _packed(3, shape) + _field(5, body)
    ),
    st.one_of(st.sampled_from([b"number", b"digits"]), texts),
    st.one_of(st.sampled_from([b"INT64", b"BYTES", b"FP32", b"BOOL", b""]), texts),
    st.lists(st.one_of(st.integers(0, 4), ints), max_size=4),
    contents,
)
raw_contents = st.one_of(
    st.binary(max_size=40),
    st.lists(ints, max_size=8).map(lambda v: np.array(v, dtype="<i8").tobytes()),
    st.lists(st.sampled_from([b"1299", b"", b"1a", b"\xff\xfe"]), max_size=4).map(_bytes_elements),
    st.just(b"\xff\xff\xff\x7f"),  # a BYTES length past its data
)
infer_request = st.builds(
    lambda model, version, inputs, outputs, raw: (
        _field(1, model)
        + _field(2, version)
        + b"".join(_field(5, t) for t in inputs)
        + b"".join(_field(6, _field(1, o)) for o in outputs)
        + b"".join(_field(7, r) for r in raw)
    ),
    names,
    st.sampled_from([b"", b"", b"2.0.0", b"1"]),
    st.lists(tensor, min_size=1, max_size=2),
    st.lists(
        st.one_of(st.sampled_from([b"output", b"probabilities", b"proved"]), texts), max_size=3
    ),
    st.lists(raw_contents, max_size=3),
)


# Nearly right: one input of the right name and type, shape and data that may disagree, values
# that may be out of range (digits past 0-9, numbers with signs, spaces, other scripts' digits).
def _near(input_name: bytes, datatype: bytes, shape: list[int], raw: bytes, typed: bool) -> bytes:
    if typed:  # the same data in contents (int64_contents, or bytes_contents) instead
        values = np.frombuffer(raw, dtype="<i8").tolist() if datatype == b"INT64" else None
        body = _packed(3, values) if values is not None else b""
        tensor = _field(1, input_name) + _field(2, datatype) + _packed(3, shape) + _field(5, body)
        return _field(1, b"counter") + _field(5, tensor)
    tensor = _field(1, input_name) + _field(2, datatype) + _packed(3, shape)
    return _field(1, b"counter") + _field(5, tensor) + _field(7, raw)


number_texts = st.lists(
    st.one_of(
        st.from_regex(r"\A[0-9]{1,30}\Z").map(str.encode),
        st.sampled_from([b"", b"-1", b" 1", b"1.5", b"\xd9\xa1", b"1e3", b"+4", b"\xff"]),
    ),
    min_size=1,
    max_size=5,
)
near_valid = st.one_of(
    st.builds(
        lambda numbers, extra: _near(
            b"number", b"BYTES", [len(numbers) + extra], _bytes_elements(numbers), False
        ),
        number_texts,
        st.sampled_from([0, 0, 0, 1, -1]),
    ),
    st.builds(
        lambda rows, time, values, typed: _near(
            b"digits",
            b"INT64",
            [rows, time],
            np.resize(np.array(values, dtype="<i8"), rows * time if values else 0).tobytes(),
            typed,
        ),
        st.integers(0, 4),
        st.integers(0, 6),
        st.lists(st.one_of(st.integers(0, 9), ints), max_size=24),
        st.booleans(),
    ),
)


# A well-formed message with any values, or one spoiled: bytes appended (often a truncated or
# impossible field), or a string field (the model's name) that is not UTF-8.
spoiled = st.one_of(
    st.tuples(infer_request, st.binary(min_size=1, max_size=16)).map(b"".join),
    st.tuples(infer_request, st.binary(min_size=1, max_size=12)).map(
        lambda parts: parts[0] + _field(1, parts[1])
    ),
    st.tuples(infer_request, tensor, st.binary(max_size=24)).map(
        lambda parts: parts[0] + _field(5, parts[1] + _field(5, parts[2]))
    ),
)
METHODS = ["ModelInfer", "ModelMetadata", "ModelReady", "ServerMetadata", "ServerReady"]
REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@pytest.fixture(scope="module")
def channel(served: Served) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(served.address) as opened:
        yield opened


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.tuples(st.just("ModelInfer"), st.one_of(infer_request, near_valid)),
        st.tuples(st.sampled_from(METHODS), st.one_of(spoiled, st.binary(max_size=64))),
    )
)
def test_no_malformed_message_gets_internal_or_unknown(
    channel: grpc.Channel, call_and_message: tuple[str, bytes]
) -> None:
    method, message = call_and_message
    call = channel.unary_unary(SERVICE + method)
    try:
        call(message, timeout=30)
        return  # well-formed after all, and answered
    except grpc.RpcError as error:
        code, details = error.code(), error.details()
    assert code in REFUSALS, (code, details)
    assert details  # every refusal says what was wrong


def test_a_message_past_the_cap_is_refused_naming_the_setting(channel: grpc.Channel) -> None:
    number = b"1" * (MESSAGE_CAP + 1)
    message = _field(1, b"counter") + _field(5, _field(1, b"number") + _field(2, b"BYTES"))
    message += _field(7, _bytes_elements([number]))
    with pytest.raises(grpc.RpcError) as refused:
        channel.unary_unary(SERVICE + "ModelInfer")(message, timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"{MESSAGE_CAP} (COUNTER_GRPC_MAX_MESSAGE_BYTES)" in refused.value.details()


def _number_request(number: str) -> bytes:
    """ModelInfer for one number, asking only for the output (a client takes 4 MB at most)."""
    tensor = _field(1, b"number") + _field(2, b"BYTES") + _packed(3, [1])
    raw = _field(7, _bytes_elements([number.encode()]))
    return _field(1, b"counter") + _field(5, tensor) + _field(6, _field(1, b"output")) + raw


def test_calls_past_the_cap_are_refused_and_sigterm_lets_calls_finish(
    shipped: Path, tmp_path: Path
) -> None:
    port = free_port()
    server, _ = start_server(
        shipped,
        tmp_path / "server.log",
        COUNTER_GRPC_PORT=str(port),
        COUNTER_GRPC_MAX_CALLS="1",
        COUNTER_MAX_LARGE_REQUESTS="8",
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as opened:
            infer = opened.unary_unary(SERVICE + "ModelInfer")

            def one(_: int) -> str:
                try:
                    infer(_number_request(LONG), timeout=60)
                    return "OK"
                except grpc.RpcError as error:
                    return f"{error.code().name}: {error.details()}"

            with ThreadPoolExecutor(6) as pool:
                codes = list(pool.map(one, range(6)))
            refused = [code for code in codes if code != "OK"]
            assert "OK" in codes
            assert refused
            assert all(
                code.startswith("RESOURCE_EXHAUSTED: ") and "(COUNTER_GRPC_MAX_CALLS)" in code
                for code in refused
            )
            # SIGTERM while a call runs: it is answered whole, then the process exits 0.
            running = infer.future(_number_request(LONG), timeout=60)
            time.sleep(0.2)  # the call is on its way (order only: nothing here is timed)
            server.send_signal(signal.SIGTERM)
            reply = running.result()
            assert b"counter" in reply  # a whole ModelInferResponse, from the model named
            assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            stop_server(server)


def test_tritonclient_loads_and_unloads_with_the_operator_token_only(
    models_copy: Path, tmp_path: Path
) -> None:
    port = free_port()
    server, _ = start_server(
        models_copy,
        tmp_path / "server.log",
        COUNTER_GRPC_PORT=str(port),
        COUNTER_MODEL_CONTROL="explicit",
        COUNTER_ADMIN_TOKEN="an-operator-token",
    )
    try:
        job = {
            "model": "counter-post",
            "actions": [
                {"call": "unload"},
                {"call": "unload", "token": "a-guess"},
                {"call": "unload", "token": "an-operator-token"},
                {"call": "load", "token": "a-guess"},
                {"call": "load", "token": "an-operator-token"},
            ],
        }
        steps = run_client("triton-repository", f"127.0.0.1:{port}", job)["steps"]
    finally:
        stop_server(server)
    outcomes = [step["outcome"].split(":")[0] for step in steps]
    assert outcomes == [
        "StatusCode.UNAUTHENTICATED",
        "StatusCode.UNAUTHENTICATED",
        "OK",
        "StatusCode.UNAUTHENTICATED",
        "OK",
    ]
    assert "Authorization: Bearer <COUNTER_ADMIN_TOKEN>" in steps[0]["outcome"]
    states = [step["index"]["counter-post"] for step in steps]
    assert states == ["READY", "READY", "UNAVAILABLE", "UNAVAILABLE", "READY"]
