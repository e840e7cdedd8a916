"""A reader of the ONNX file format, just enough to read a model's graph and its constants.

The service re-runs the proof on the weights of the file it loads; that needs the graph's
nodes, attributes and initializers, not the whole `onnx` package (whose import, with ml_dtypes
and protobuf, took a third of the service's start-up: docs/benchmarks.md). ONNX files are
Protocol Buffers; this reads the wire format directly, for the fields listed in _FIELDS from
onnx.proto3 (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto).
Training, which builds graphs, uses the `onnx` package; tests check both read the same.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt


class OnnxFormatError(ValueError):
    """Bytes that are not an ONNX model this reader can read."""


# TensorProto.DataType -> numpy dtype, for the element types a counter's graph holds.
DTYPES: dict[int, Any] = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    5: np.int16,
    6: np.int32,
    7: np.int64,
    9: np.bool_,
    10: np.float16,
    11: np.float64,
    12: np.uint32,
    13: np.uint64,
}
FLOAT = 1  # TensorProto.FLOAT
# AttributeProto.AttributeType
ATTRIBUTE_FLOAT, ATTRIBUTE_INT, ATTRIBUTE_STRING, ATTRIBUTE_TENSOR = 1, 2, 3, 4
ATTRIBUTE_FLOATS, ATTRIBUTE_INTS, ATTRIBUTE_STRINGS = 6, 7, 8


@dataclass
class Tensor:
    """A constant tensor: its name and values."""

    name: str = ""
    dims: list[int] = field(default_factory=list)
    data_type: int = 0
    raw: bytes = b""
    floats: list[float] = field(default_factory=list)
    ints: list[int] = field(default_factory=list)
    doubles: list[float] = field(default_factory=list)

    def array(self) -> npt.NDArray[Any]:
        """The values as a numpy array of the tensor's shape and type."""
        if self.data_type not in DTYPES:
            raise OnnxFormatError(f"tensor {self.name!r} has element type {self.data_type}")
        dtype = np.dtype(DTYPES[self.data_type])
        if self.raw:
            values = np.frombuffer(self.raw, dtype=dtype.newbyteorder("<")).astype(dtype)
        elif self.floats:
            values = np.asarray(self.floats, dtype=dtype)
        elif self.doubles:
            values = np.asarray(self.doubles, dtype=dtype)
        else:
            values = np.asarray(self.ints, dtype=dtype)
        count = int(np.prod(self.dims)) if self.dims else 1
        if values.size != count:
            raise OnnxFormatError(f"tensor {self.name!r} has {values.size} values for {self.dims}")
        return values.reshape(self.dims)


@dataclass
class Attribute:
    """A node attribute: one of f, i, s, t, floats, ints, strings (by `type`)."""

    name: str = ""
    type: int = 0
    f: float = 0.0
    i: int = 0
    s: bytes = b""
    t: Tensor | None = None
    floats: list[float] = field(default_factory=list)
    ints: list[int] = field(default_factory=list)
    strings: list[bytes] = field(default_factory=list)

    def value(self) -> Any:
        """The attribute's value, as onnx.helper.get_attribute_value gives it."""
        values: dict[int, Any] = {
            ATTRIBUTE_FLOAT: self.f,
            ATTRIBUTE_INT: self.i,
            ATTRIBUTE_STRING: self.s,
            ATTRIBUTE_TENSOR: self.t,
            ATTRIBUTE_FLOATS: self.floats,
            ATTRIBUTE_INTS: self.ints,
            ATTRIBUTE_STRINGS: self.strings,
        }
        if self.type not in values:
            raise OnnxFormatError(f"attribute {self.name!r} has type {self.type}")
        return values[self.type]


@dataclass
class Node:
    """One operator of the graph."""

    op_type: str = ""
    name: str = ""
    domain: str = ""
    input: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    attribute: list[Attribute] = field(default_factory=list)


@dataclass
class ValueInfo:
    """A graph input or output: its name (its type is not needed here)."""

    name: str = ""


@dataclass
class Graph:
    """Nodes, constants, inputs and outputs."""

    name: str = ""
    node: list[Node] = field(default_factory=list)
    initializer: list[Tensor] = field(default_factory=list)
    input: list[ValueInfo] = field(default_factory=list)
    output: list[ValueInfo] = field(default_factory=list)


@dataclass
class Model:
    """An ONNX model: its graph (the rest of ModelProto is skipped)."""

    graph: Graph = field(default_factory=Graph)


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= len(data):
            raise OnnxFormatError("the file ends inside a number")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise OnnxFormatError("a number longer than 64 bits")


def _signed(value: int) -> int:
    """A varint read as int64 (two's complement), as protobuf's int64 fields are."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value): varint -> int, 64-bit -> bytes(8), length-delimited ->
    bytes, 32-bit -> bytes(4)."""
    found: list[tuple[int, int, Any]] = []
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, at = _varint(data, at)
        elif wire == 1:
            value, at = data[at : at + 8], at + 8
        elif wire == 2:
            size, at = _varint(data, at)
            if at + size > len(data):
                raise OnnxFormatError("a field runs past the end of the file")
            value, at = data[at : at + size], at + size
        elif wire == 5:
            value, at = data[at : at + 4], at + 4
        else:
            raise OnnxFormatError(f"wire type {wire} is not read")
        found.append((number, wire, value))
    return found


def _text(value: Any) -> str:
    return bytes(value).decode("utf-8")


def _packed_ints(wire: int, value: Any) -> list[int]:
    if wire == 0:
        return [_signed(value)]
    ints, at = [], 0
    while at < len(value):
        number, at = _varint(value, at)
        ints.append(_signed(number))
    return ints


def _packed_floats(wire: int, value: Any) -> list[float]:
    """Packed (length-delimited) or one 32-bit float: little-endian bytes either way."""
    floats: list[float] = np.frombuffer(bytes(value), dtype="<f4").astype(float).tolist()
    return floats


def _tensor(data: bytes) -> Tensor:
    tensor = Tensor()
    for number, wire, value in _fields(data):
        if number == 1:
            tensor.dims += _packed_ints(wire, value)
        elif number == 2:
            tensor.data_type = value
        elif number == 4:
            tensor.floats += _packed_floats(wire, value)
        elif number in (5, 7):  # int32_data, int64_data
            tensor.ints += _packed_ints(wire, value)
        elif number == 8:
            tensor.name = _text(value)
        elif number == 9:
            tensor.raw = bytes(value)
        elif number == 10:  # double_data
            raw = bytes(value)
            tensor.doubles += np.frombuffer(raw, dtype="<f8").astype(float).tolist()
        elif number == 14 and value == 1:  # data_location EXTERNAL
            raise OnnxFormatError(f"tensor {tensor.name!r} keeps its data in another file")
    return tensor


def _attribute(data: bytes) -> Attribute:
    attribute = Attribute()
    for number, wire, value in _fields(data):
        if number == 1:
            attribute.name = _text(value)
        elif number == 2:
            attribute.f = float(np.frombuffer(bytes(value), dtype="<f4")[0])
        elif number == 3:
            attribute.i = _signed(value)
        elif number == 4:
            attribute.s = bytes(value)
        elif number == 5:
            attribute.t = _tensor(value)
        elif number == 7:
            attribute.floats += _packed_floats(wire, value)
        elif number == 8:
            attribute.ints += _packed_ints(wire, value)
        elif number == 9:
            attribute.strings.append(bytes(value))
        elif number == 20:
            attribute.type = value
    return attribute


def _node(data: bytes) -> Node:
    node = Node()
    for number, _, value in _fields(data):
        if number == 1:
            node.input.append(_text(value))
        elif number == 2:
            node.output.append(_text(value))
        elif number == 3:
            node.name = _text(value)
        elif number == 4:
            node.op_type = _text(value)
        elif number == 5:
            node.attribute.append(_attribute(value))
        elif number == 7:
            node.domain = _text(value)
    return node


def _value_info(data: bytes) -> ValueInfo:
    for number, _, value in _fields(data):
        if number == 1:
            return ValueInfo(_text(value))
    return ValueInfo()


def _graph(data: bytes) -> Graph:
    graph = Graph()
    for number, _, value in _fields(data):
        if number == 1:
            graph.node.append(_node(value))
        elif number == 2:
            graph.name = _text(value)
        elif number == 5:
            graph.initializer.append(_tensor(value))
        elif number == 11:
            graph.input.append(_value_info(value))
        elif number == 12:
            graph.output.append(_value_info(value))
    return graph


def read_model(data: bytes) -> Model:
    """The graph of an ONNX model file's bytes; OnnxFormatError if they are not one."""
    try:
        fields = _fields(data)
    except (IndexError, UnicodeDecodeError) as exc:
        raise OnnxFormatError(f"not an ONNX model: {exc}") from None
    graphs = [value for number, wire, value in fields if number == 7 and wire == 2]
    if len(graphs) != 1:
        raise OnnxFormatError("not an ONNX model: it has no graph")
    try:
        return Model(_graph(graphs[0]))
    except (IndexError, UnicodeDecodeError) as exc:
        raise OnnxFormatError(f"not an ONNX model: {exc}") from None
