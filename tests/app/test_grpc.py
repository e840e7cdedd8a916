"""The Open Inference Protocol over gRPC, against a real server (`python -m app` with
COUNTER_GRPC_PORT): tritonclient's gRPC client (sync and asyncio) and KServe's
InferenceGRPCClient get the same answers, flags and `proved` as REST; refusals are statuses
that say what was wrong, and a hostile client gets no INTERNAL or UNKNOWN.

The clients run in processes of their own (tests/app/grpc_clients.py): tritonclient's and
KServe's generated modules register the same protobuf names, which one process cannot hold
twice. Calls this module makes itself go over a channel of plain bytes (no generated code),
built by tests/app/grpc_messages.py. The port's caps, SIGTERM and model control are
tests/app/test_grpc_operations.py's.
"""

import json
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
from tests.app.grpc_clients import run_client
from tests.app.grpc_messages import (
    SERVICE,
    bytes_elements,
    infer_request,
    near_valid,
    packed,
    spoiled,
)
from tests.app.protowire import field as _field
from tests.app.protowire import fields
from tests.app.server import free_port, start_server, stop_server

pytestmark = pytest.mark.server
NUMBERS = ["1299", "0", "99999999", "1476233999", "9" * 40, "007"]
MESSAGE_CAP = 65536


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


@pytest.mark.parametrize(
    "method", [SERVICE + "ModelStreamInfer", SERVICE + "modelinfer", "/other.Service/ModelInfer"]
)
def test_a_method_not_served_is_unimplemented(channel: grpc.Channel, method: str) -> None:
    """The calls are grpc's registered methods (app.grpc.server): any other is grpc's own
    UNIMPLEMENTED, never INTERNAL or UNKNOWN, and the server goes on answering."""
    with pytest.raises(grpc.RpcError) as refused:
        channel.unary_unary(method)(b"", timeout=30)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    live = channel.unary_unary(SERVICE + "ServerLive")(b"", timeout=30)
    assert live == b"\x08\x01"  # ServerLiveResponse(live=True)


def test_a_message_past_the_cap_is_refused_naming_the_setting(channel: grpc.Channel) -> None:
    number = b"1" * (MESSAGE_CAP + 1)
    message = _field(1, b"counter") + _field(5, _field(1, b"number") + _field(2, b"BYTES"))
    message += _field(7, bytes_elements([number]))
    with pytest.raises(grpc.RpcError) as refused:
        channel.unary_unary(SERVICE + "ModelInfer")(message, timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"{MESSAGE_CAP} (COUNTER_GRPC_MAX_MESSAGE_BYTES)" in refused.value.details()


def test_calls_sharing_model_runs_each_get_their_own_answer(channel: grpc.Channel) -> None:
    """16 calls at once, of numbers 1 to 40 digits long: the server's handler threads share
    model runs (app.grpc.threads), and each call still gets its own number's answer and its
    probabilities cut to its own length."""
    rng = np.random.default_rng(24)
    numbers = [
        "9" * k
        if k % 3 == 0
        else str(rng.integers(1, 10)) + "".join(map(str, rng.integers(0, 10, k - 1)))
        for k in range(1, 41)
    ] * 5
    call = channel.unary_unary(SERVICE + "ModelInfer")

    def one(number: str) -> tuple[str, int]:
        tensor = _field(1, b"number") + _field(2, b"BYTES") + packed(3, [1])
        asked = _field(6, _field(1, b"output")) + _field(6, _field(1, b"probabilities"))
        raw = _field(7, bytes_elements([number.encode()]))
        output, probabilities = fields(
            call(_field(1, b"counter") + _field(5, tensor) + asked + raw, timeout=30)
        )[6]
        return output[4:].decode(), len(probabilities)

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(one, numbers))
    assert got == [(add_one(n), 4 * 10 * (len(n) + 1)) for n in numbers]  # float32 [1, n + 1, 10]
