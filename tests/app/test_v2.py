"""The Open Inference Protocol, spoken by the real clients to a real uvicorn process:
tritonclient (JSON and binary, sync and async) and the kserve package's REST client."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from kserve import InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest
from tritonclient.utils import InferenceServerException

from core.codec import add_one, encode_batch
from core.session import open_session
from tests.app.server import start_server, stop_server

pytestmark = pytest.mark.server
NUMBERS = ["1299", "0", "99999999", "1476233999"]


@pytest.fixture(scope="module")
def base(shipped: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server, url = start_server(shipped, tmp_path_factory.mktemp("v2") / "server.log")
    yield url
    stop_server(server)


def _text(value: str | bytes) -> str:
    """A BYTES element as tritonclient gives it: str from JSON, bytes from binary data."""
    return value.decode() if isinstance(value, bytes) else value


def _onnx(shipped: Path, digits: np.ndarray) -> np.ndarray:
    (probs,) = open_session(shipped / "counter.onnx").run(None, {"digits": digits})
    return np.asarray(probs)


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_runs_the_raw_onnx_contract(base: str, shipped: Path, binary: bool) -> None:
    client = triton.InferenceServerClient(base.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("counter")
    metadata = client.get_model_metadata("counter")
    assert {i["name"] for i in metadata["inputs"]} == {"digits", "number"}
    digits = encode_batch(NUMBERS)  # [4, 11]
    tensor = triton.InferInput("digits", list(digits.shape), "INT64")
    tensor.set_data_from_numpy(digits, binary_data=binary)
    wanted = triton.InferRequestedOutput("probabilities", binary_data=binary)
    result = client.infer("counter", [tensor], outputs=[wanted])
    probs = result.as_numpy("probabilities")
    assert probs.dtype == np.float32
    assert probs.shape == (*digits.shape, 10)
    np.testing.assert_array_equal(probs, _onnx(shipped, digits))  # the same float32 bits


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_gets_the_counters_answers(base: str, binary: bool) -> None:
    client = triton.InferenceServerClient(base.removeprefix("http://"))
    tensor = triton.InferInput("number", [len(NUMBERS)], "BYTES")
    tensor.set_data_from_numpy(np.array([n.encode() for n in NUMBERS], dtype=object), binary)
    names = ["output", "carry_run", "beyond_reliable_carry", "proved", "correct"]
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in names]
    result = client.infer("counter", [tensor], outputs=outputs, request_id="r-1")
    assert [_text(o) for o in result.as_numpy("output")] == [add_one(n) for n in NUMBERS]
    assert result.as_numpy("carry_run").tolist() == [2, 0, 8, 3]
    assert result.as_numpy("proved").tolist() == [True] * 4
    assert result.as_numpy("correct").tolist() == [True] * 4
    assert result.as_numpy("beyond_reliable_carry").tolist() == [False] * 4
    assert result.get_response()["id"] == "r-1"


def test_tritonclient_sees_the_post_model_unproved(base: str) -> None:
    client = triton.InferenceServerClient(base.removeprefix("http://"))
    tensor = triton.InferInput("number", [2], "BYTES")
    tensor.set_data_from_numpy(np.array([b"1299", b"9" * 40], dtype=object))
    result = client.infer("counter-post", [tensor])  # no outputs asked: every one
    assert result.as_numpy("proved").tolist() == [False, False]
    assert result.as_numpy("beyond_reliable_carry").tolist() == [True, True]
    assert result.as_numpy("correct")[1] == np.False_  # 40 nines: the post's model fails
    assert result.as_numpy("probabilities").shape == (2, 41, 10)


def test_tritonclient_errors_carry_the_message(base: str) -> None:
    client = triton.InferenceServerClient(base.removeprefix("http://"))
    tensor = triton.InferInput("number", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"12a"], dtype=object))
    with pytest.raises(InferenceServerException, match="contains 'a', which is not a digit"):
        client.infer("counter", [tensor])
    with pytest.raises(InferenceServerException, match="no model named 'nope'"):
        client.infer("nope", [tensor])


def test_tritonclient_async_runs_concurrent_requests(base: str) -> None:
    async def run() -> list[str]:
        client = triton_aio.InferenceServerClient(base.removeprefix("http://"))
        try:

            async def one(number: str) -> str:
                tensor = triton_aio.InferInput("number", [1], "BYTES")
                tensor.set_data_from_numpy(np.array([number.encode()], dtype=object))
                result = await client.infer("counter", [tensor])
                return _text(result.as_numpy("output")[0])

            return list(await asyncio.gather(*(one(n) for n in NUMBERS * 8)))
        finally:
            await client.close()

    assert asyncio.run(run()) == [add_one(n) for n in NUMBERS * 8]


@pytest.mark.parametrize("binary", [False, True])
def test_the_kserve_rest_client_infers(base: str, shipped: Path, binary: bool) -> None:
    async def run() -> Any:
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        try:
            assert await client.is_server_live(base)
            assert await client.is_server_ready(base)
            assert await client.is_model_ready(base, "counter")
            digits = encode_batch(NUMBERS)
            tensor = InferInput("digits", list(digits.shape), "INT64")
            tensor.set_data_from_numpy(digits, binary_data=binary)
            request = InferRequest(model_name="counter", infer_inputs=[tensor])
            return await client.infer(base, request, model_name="counter"), digits
        finally:
            await client.close()  # its connection pool, else a socket left to the collector

    response, digits = asyncio.run(run())
    probs = response.outputs[0].as_numpy()
    np.testing.assert_array_equal(probs.reshape(*digits.shape, 10), _onnx(shipped, digits))


def test_the_triton_config_names_what_perf_analyzer_sends(base: str) -> None:
    """perf_analyzer reads GET /v2/models/{name}/config first and sends every input it
    declares that is not optional: both inputs, optional (a request sends one), and the
    outputs with Triton's type names."""
    client = triton.InferenceServerClient(base.removeprefix("http://"))
    config = client.get_model_config("counter")
    assert config["name"] == "counter"
    assert config["input"] == [
        {"name": "digits", "data_type": "TYPE_INT64", "dims": [-1, -1], "optional": True},
        {"name": "number", "data_type": "TYPE_STRING", "dims": [-1], "optional": True},
    ]
    types = {o["name"]: o["data_type"] for o in config["output"]}
    assert types == {
        "output": "TYPE_STRING",
        "probabilities": "TYPE_FP32",
        "carry_run": "TYPE_INT64",
        "beyond_reliable_carry": "TYPE_BOOL",
        "proved": "TYPE_BOOL",
        "correct": "TYPE_BOOL",
    }
    with pytest.raises(InferenceServerException, match="no model named 'nope'"):
        client.get_model_config("nope")
