"""V2 ModelInfer messages built on the wire for the gRPC tests: protobuf fields by number, with
any wire type, any value, and the message shapes of ModelInferRequest (model, inputs, contents,
outputs), as hypothesis strategies of malformed and nearly right requests."""

import numpy as np
from hypothesis import strategies as st

from tests.app.protowire import field as _field
from tests.app.protowire import varint as _varint

SERVICE = "/inference.GRPCInferenceService/"


def packed(number: int, values: list[int]) -> bytes:
    return _field(number, b"".join(_varint(v) for v in values))


def bytes_elements(values: list[bytes]) -> bytes:
    return b"".join(len(v).to_bytes(4, "little") + v for v in values)


def number_request(number: str) -> bytes:
    """ModelInfer for one number, asking only for the output (a client takes 4 MB at most)."""
    tensor = _field(1, b"number") + _field(2, b"BYTES") + packed(3, [1])
    raw = _field(7, bytes_elements([number.encode()]))
    return _field(1, b"counter") + _field(5, tensor) + _field(6, _field(1, b"output")) + raw


texts = st.one_of(
    st.sampled_from([b"counter", b"counter-post", b"digits", b"number", b"INT64", b"BYTES", b""]),
    st.text(max_size=12).map(str.encode),
)
names = st.sampled_from([b"counter", b"counter", b"counter-post", b"nope"])
ints = st.one_of(st.integers(-3, 12), st.integers(-(2**63), 2**63 - 1))
contents = st.one_of(
    st.lists(ints, max_size=12).map(lambda v: packed(3, v)),
    st.lists(st.sampled_from([b"41", b"9" * 30, b"", b"x", b"\xff"]), max_size=6).map(
        lambda v: b"".join(_field(8, x) for x in v)
    ),
    st.just(b""),
)
tensor = st.builds(
    lambda name, datatype, shape, body: (
        _field(1, name) + _field(2, datatype) + packed(3, shape) + _field(5, body)
    ),
    st.one_of(st.sampled_from([b"number", b"digits"]), texts),
    st.one_of(st.sampled_from([b"INT64", b"BYTES", b"FP32", b"BOOL", b""]), texts),
    st.lists(st.one_of(st.integers(0, 4), ints), max_size=4),
    contents,
)
raw_contents = st.one_of(
    st.binary(max_size=40),
    st.lists(ints, max_size=8).map(lambda v: np.array(v, dtype="<i8").tobytes()),
    st.lists(st.sampled_from([b"1299", b"", b"1a", b"\xff\xfe"]), max_size=4).map(bytes_elements),
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
        body = packed(3, values) if values is not None else b""
        tensor = _field(1, input_name) + _field(2, datatype) + packed(3, shape) + _field(5, body)
        return _field(1, b"counter") + _field(5, tensor)
    tensor = _field(1, input_name) + _field(2, datatype) + packed(3, shape)
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
            b"number", b"BYTES", [len(numbers) + extra], bytes_elements(numbers), False
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
