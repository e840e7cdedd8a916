"""Malformed Open Inference Protocol requests against a real uvicorn process: each is refused
with a 4xx in the protocol's error shape ({"error": "<words>"}), never a 5xx, and a body built
to stall the parser is refused at once. A property test generates bodies from the protocol's
grammar (JSON and the binary extension), valid and broken at every level."""

import http.client
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.app.server import connect, read_response, start_server, stop_server

pytestmark = pytest.mark.server
INFER = "/v2/models/counter/infer"


@pytest.fixture(scope="module")
def base(shipped: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("v2_hostile") / "server.log"
    server, url = start_server(shipped, log, COUNTER_ACCESS_LOG="false")
    yield url
    stop_server(server)


def post_raw(
    base: str, body: bytes, headers: dict[str, bytes] | None = None, path: str = INFER
) -> tuple[int, dict[str, str], bytes]:
    """POST on a new connection, header values written as the bytes given."""
    head = [f"POST {path} HTTP/1.1".encode(), b"Host: test", b"Content-Type: application/json"]
    head.append(b"Content-Length: " + str(len(body)).encode())
    head += [name.encode() + b": " + value for name, value in (headers or {}).items()]
    with connect(base, 30) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        return read_response(sock)


def assert_refused(status: int, body: bytes, words: str = "") -> None:
    assert 400 <= status < 500, (status, body[:300])
    error = json.loads(body)
    assert set(error) == {"error"}, error
    assert isinstance(error["error"], str)
    assert words in error["error"], error


def number_input(**extra: Any) -> dict[str, Any]:
    return {"name": "number", "shape": [1], "datatype": "BYTES", "data": ["1299"], **extra}


MALFORMED: dict[str, Any] = {
    "parameters a string at input level": {"inputs": [number_input(parameters="x")]},
    "parameters a list at input level": {"inputs": [number_input(parameters=[1])]},
    "parameters a number at input level": {"inputs": [number_input(parameters=7)]},
    "parameters a string at output level": {
        "inputs": [number_input()],
        "outputs": [{"name": "output", "parameters": "x"}],
    },
    "parameters a list at output level": {
        "inputs": [number_input()],
        "outputs": [{"name": "output", "parameters": []}],
    },
    "parameters a string at request level": {"inputs": [number_input()], "parameters": "x"},
    "parameters a number at request level": {"inputs": [number_input()], "parameters": 3},
    "outputs not an array": {"inputs": [number_input()], "outputs": "output"},
    "id not a string": {"id": 42, "inputs": [number_input()]},
    "data nested deeper than its shape": {
        "inputs": [{"name": "digits", "shape": [1, 2], "datatype": "INT64", "data": [[[1, 2]]]}]
    },
    "ragged data": {
        "inputs": [{"name": "digits", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2], [3]]}]
    },
    "ragged data with the right count": {
        "inputs": [
            {"name": "digits", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2, 3], [4]]}
        ]
    },
    "data not an array": {
        "inputs": [{"name": "number", "shape": [1], "datatype": "BYTES", "data": "1299"}]
    },
    "data nested 1000 deep": {
        "inputs": [
            {"name": "digits", "shape": [1, 1], "datatype": "INT64", "data": "NEST"},
        ]
    },
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_requests_are_refused_in_the_protocols_shape(base: str, case: str) -> None:
    body = json.dumps(MALFORMED[case]).encode()
    body = body.replace(b'"NEST"', b"[" * 1000 + b"1" + b"]" * 1000)
    status, _, answer = post_raw(base, body)
    assert_refused(status, answer)


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [{"name": "number", "shape": [1], "datatype": "BYTES", "data": ["\\ud800"]}]}',
        b'{"id": "\\udc00", "inputs": [{"name": "number", "shape": [1], "datatype": "BYTES", '
        b'"data": ["1299"]}]}',
    ],
    ids=["in BYTES data", "in the request id"],
)
def test_a_lone_surrogate_is_refused(base: str, body: bytes) -> None:
    status, _, answer = post_raw(base, body)
    assert_refused(status, answer, "not valid JSON")


def test_a_header_length_in_non_ascii_digits_is_refused(base: str) -> None:
    """'²' (latin-1 0xB2) is a digit to str.isdigit, not to int()."""
    body = json.dumps({"inputs": [number_input()]}).encode()
    status, _, answer = post_raw(base, body, {"Inference-Header-Content-Length": b"\xb2"})
    assert_refused(status, answer, "Inference-Header-Content-Length")


def test_a_shape_of_huge_dimensions_is_refused_before_any_arithmetic(base: str) -> None:
    """1 040 dimensions of 4 000 digits each (a 4 MB body) once froze the event loop for
    23.6 s multiplying them; now refused at once, and the server answers the next request."""
    dims = ",".join(["9" * 4000] * 1040)
    body = (
        '{"inputs": [{"name": "digits", "datatype": "INT64", "data": [1], "shape": ['
        + dims
        + "]}]}"
    ).encode()
    status, _, answer = post_raw(base, body)
    assert_refused(status, answer)
    for shape in ([2**40, 2**40, 0, 2**40], [10**9, 10**9], [1] * 9):
        huge = {"inputs": [{"name": "digits", "datatype": "INT64", "data": [1], "shape": shape}]}
        status, _, answer = post_raw(base, json.dumps(huge).encode())
        assert_refused(status, answer)
    good = json.dumps({"inputs": [number_input()]}).encode()
    status, _, answer = post_raw(base, good)
    assert status == 200, answer[:300]


# The property test: bodies from the protocol's grammar, each part valid or broken.

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=10,
)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the valid part, sometimes any JSON value in its place."""
    return st.one_of(valid, valid, valid, JSON_VALUES)


NUMBERS = st.lists(st.text("0123456789", min_size=1, max_size=30), min_size=1, max_size=6)
SHAPES = st.lists(
    st.one_of(st.integers(0, 6), st.integers(-3, 2**70), st.just(10**400 // 10**390)),
    max_size=10,
)


@st.composite
def inputs(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """One input and its binary data (b"" when its data is JSON)."""
    if draw(st.booleans()):
        numbers = draw(NUMBERS)
        name, datatype, shape = "number", "BYTES", [len(numbers)]
        data: list[Any] = numbers
        raw = b"".join(struct.pack("<I", len(n)) + n.encode() for n in numbers)
    else:
        rows = draw(st.integers(1, 3))
        width = draw(st.integers(1, 6))
        digits = draw(st.lists(st.integers(-1, 10), min_size=rows * width, max_size=rows * width))
        name, datatype, shape = "digits", "INT64", [rows, width]
        data = digits if draw(st.booleans()) else [digits[r::rows] for r in range(rows)]
        raw = struct.pack(f"<{len(digits)}q", *digits)
    item: dict[str, Any] = {
        "name": draw(maybe(st.just(name))),
        "shape": draw(maybe(st.one_of(st.just(shape), SHAPES))),
        "datatype": draw(maybe(st.sampled_from([datatype, "INT64", "BYTES", "FP32", "int64"]))),
    }
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] if draw(st.booleans()) else raw
        item["parameters"] = draw(maybe(st.just({"binary_data_size": len(raw)})))
        return item, raw
    item["data"] = draw(maybe(st.just(data)))
    if draw(st.booleans()):
        item["parameters"] = draw(JSON_VALUES)
    return item, b""


@st.composite
def infer_bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, bytes]]:
    """A body and its extra headers: JSON, or JSON + binary tensors."""
    drawn = draw(st.lists(inputs(), min_size=0, max_size=2))
    body: dict[str, Any] = {"inputs": draw(maybe(st.just([item for item, _ in drawn])))}
    if draw(st.booleans()):
        body["id"] = draw(maybe(st.text(max_size=10)))
    if draw(st.booleans()):
        body["parameters"] = draw(maybe(st.just({"binary_data_output": draw(st.booleans())})))
    if draw(st.booleans()):
        names = st.sampled_from(["output", "probabilities", "proved", "carry_run", "x"])
        asked = st.fixed_dictionaries(
            {"name": maybe(names)},
            optional={"parameters": maybe(st.just({"binary_data": True}))},
        )
        body["outputs"] = draw(maybe(st.lists(asked, max_size=3)))
    head = json.dumps(body).encode()
    tail = b"".join(raw for _, raw in drawn)
    if not tail and draw(st.integers(0, 5)) != 0:
        return head, {}
    length = draw(
        st.sampled_from(
            [str(len(head)).encode(), b"\xb2", b"-1", b"", str(len(head) + 9).encode(), b"1"]
        )
    )
    return head + tail, {"Inference-Header-Content-Length": length}


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=infer_bodies())
def test_any_body_from_the_grammar_is_answered_or_refused_never_5xx(
    base: str, case: tuple[bytes, dict[str, bytes]]
) -> None:
    body, headers = case
    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=30)
    try:
        connection.putrequest("POST", INFER)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        status, answer = response.status, response.read()
    finally:
        connection.close()
    if status == 200:
        assert "outputs" in json.loads(
            answer[: int(response.headers.get("Inference-Header-Content-Length", len(answer)))]
        )
    else:
        assert_refused(status, answer)
