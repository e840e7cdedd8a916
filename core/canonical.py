"""The one graph the service runs: an ONNX file is served only if it is, node for node, the graph
training's exporter writes (training.export: torch.onnx's legacy exporter, opset 17).

Why this and not a graph rebuilt from the weights: the proof (core.certify) reads the weights,
not the graph around them, so a file could keep the weights and change what runs (a node moved
to a custom domain backed by a model-local function, a second output, an initializer a caller
can override). Rebuilding the graph would need an ONNX writer in the service (the `onnx`
package is not installed there) and would serve a file that no card figure was measured on.
Checking the file against the exporter's graph keeps "what was measured is what is served" and
needs only this: a schema-checked read of the protobuf wire format (every field the exporter
never writes is refused, and so is a field that may appear once appearing twice, since
protobuf merges such repeats and a reader taking the last would see another graph than
onnxruntime), the graph rendered one line per node with values renamed by position, and that
rendering compared line by line with the exporter's, which depends only on the cell and the
hidden size. What the file says (cell, hidden size, parameters, opset) is returned, so the
service shows figures of the file, not of the card.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.onnx_reader import DTYPES, OnnxFormatError, Tensor, _fields, _signed, _varint

# What torch 2.13's legacy exporter writes (constraints.txt pins torch).
IR_VERSION = 8
OPSET = 17


class NotCanonicalError(ValueError):
    """The file is not the graph the exporter writes: one line saying where it differs."""


# Wire kinds: "int" varint, "str" UTF-8, "bytes", "ints"/"floats" packed or not, or a message.
# Each message lists the fields the exporter writes, as (name, kind, repeated); REFUSED names
# the fields it never writes, so that a refusal says what the file has.
_SCHEMA: dict[str, dict[int, tuple[str, str, bool]]] = {
    "ModelProto": {
        1: ("ir_version", "int", False),
        2: ("producer_name", "str", False),
        3: ("producer_version", "str", False),
        7: ("graph", "GraphProto", False),
        8: ("opset_import", "OperatorSetIdProto", True),
    },
    "OperatorSetIdProto": {1: ("domain", "str", False), 2: ("version", "int", False)},
    "GraphProto": {
        1: ("node", "NodeProto", True),
        2: ("name", "str", False),
        5: ("initializer", "TensorProto", True),
        11: ("input", "ValueInfoProto", True),
        12: ("output", "ValueInfoProto", True),
    },
    "NodeProto": {
        1: ("input", "str", True),
        2: ("output", "str", True),
        3: ("name", "str", False),
        4: ("op_type", "str", False),
        5: ("attribute", "AttributeProto", True),
        7: ("domain", "str", False),
    },
    "AttributeProto": {
        1: ("name", "str", False),
        2: ("f", "floats", False),
        3: ("i", "int", False),
        4: ("s", "bytes", False),
        5: ("t", "TensorProto", False),
        7: ("floats", "floats", True),
        8: ("ints", "ints", True),
        9: ("strings", "bytes", True),
        20: ("type", "int", False),
    },
    "TensorProto": {
        1: ("dims", "ints", True),
        2: ("data_type", "int", False),
        4: ("float_data", "floats", True),
        5: ("int32_data", "ints", True),
        7: ("int64_data", "ints", True),
        8: ("name", "str", False),
        9: ("raw_data", "bytes", False),
    },
    "ValueInfoProto": {1: ("name", "str", False), 2: ("type", "TypeProto", False)},
    "TypeProto": {1: ("tensor_type", "TypeProto.Tensor", False)},
    "TypeProto.Tensor": {1: ("elem_type", "int", False), 2: ("shape", "TensorShapeProto", False)},
    "TensorShapeProto": {1: ("dim", "TensorShapeProto.Dimension", True)},
    "TensorShapeProto.Dimension": {1: ("dim_value", "int", False), 2: ("dim_param", "str", False)},
}
REFUSED: dict[str, dict[int, str]] = {
    "ModelProto": {
        4: "domain",
        5: "model_version",
        6: "doc_string",
        14: "metadata_props",
        20: "training_info",
        25: "functions (model-local functions)",
        26: "configuration",
    },
    "GraphProto": {
        10: "doc_string",
        13: "value_info",
        14: "quantization_annotation",
        15: "sparse_initializer",
        16: "metadata_props",
    },
    "NodeProto": {6: "doc_string", 8: "overload", 9: "metadata_props", 10: "device_configurations"},
    "AttributeProto": {
        6: "g (a subgraph)",
        10: "tensors",
        11: "graphs (subgraphs)",
        13: "doc_string",
        14: "tp",
        15: "type_protos",
        21: "ref_attr_name",
        22: "sparse_tensor",
        23: "sparse_tensors",
    },
    "TensorProto": {
        3: "segment",
        6: "string_data",
        10: "double_data",
        11: "uint64_data",
        12: "doc_string",
        13: "external_data",
        14: "data_location",
        16: "metadata_props",
    },
    "ValueInfoProto": {3: "doc_string", 4: "metadata_props"},
    "TypeProto": {4: "sequence_type", 5: "map_type", 8: "sparse_tensor_type", 9: "optional_type"},
}

Message = dict[str, Any]  # field name -> value, or list of values for a repeated field


def _decode(data: bytes, kind: str) -> Message:
    """One message of the schema above; NotCanonicalError on any field outside it."""
    schema = _SCHEMA[kind]
    message: Message = {}
    for number, wire, value in _fields(data):
        if number not in schema:
            name = REFUSED.get(kind, {}).get(number, f"field {number}")
            raise NotCanonicalError(f"it has {kind}.{name}, which the exporter never writes")
        name, field_kind, repeated = schema[number]
        if field_kind in _SCHEMA:
            if wire != 2:
                raise NotCanonicalError(f"{kind}.{name} is not a message")
            item: Any = _decode(bytes(value), field_kind)
        elif field_kind == "int":
            if wire != 0:
                raise NotCanonicalError(f"{kind}.{name} is not a number")
            item = _signed(value)
        elif field_kind in ("str", "bytes"):
            if wire != 2:
                raise NotCanonicalError(f"{kind}.{name} is not a string")
            item = bytes(value).decode("utf-8") if field_kind == "str" else bytes(value)
        elif field_kind == "ints":
            item = _ints(wire, value)
        else:
            item = _floats(wire, value)
        if repeated:
            many = item if field_kind in ("ints", "floats") else [item]
            message.setdefault(name, []).extend(many)
        elif name in message:
            # protobuf merges a repeated singular field; onnxruntime would see the merge
            raise NotCanonicalError(f"{kind}.{name} appears twice")
        else:
            message[name] = item[0] if field_kind == "floats" else item
    return message


def _ints(wire: int, value: Any) -> list[int]:
    if wire == 0:
        return [_signed(value)]
    if wire != 2:
        raise NotCanonicalError("a list of integers has the wrong wire type")
    found, at, data = [], 0, bytes(value)
    while at < len(data):
        number, at = _varint(data, at)
        found.append(_signed(number))
    return found


def _floats(wire: int, value: Any) -> list[float]:
    if wire not in (2, 5) or len(value) % 4:
        raise NotCanonicalError("a list of floats has the wrong wire type")
    floats: list[float] = np.frombuffer(bytes(value), dtype="<f4").astype(float).tolist()
    return floats


_ELEMENT = {1: "float32", 7: "int64"}


def _tensor_values(tensor: Message) -> list[Any]:
    """A Constant's values, as a flat list (its element type is checked by the rendering)."""
    found = Tensor(
        name=tensor.get("name", ""),
        dims=tensor.get("dims", []),
        data_type=tensor.get("data_type", 0),
        raw=tensor.get("raw_data", b""),
        floats=tensor.get("float_data", []),
        ints=tensor.get("int64_data", []) + tensor.get("int32_data", []),
    )
    if found.data_type not in DTYPES:
        raise NotCanonicalError(f"tensor {found.name!r} has element type {found.data_type}")
    try:
        values: list[Any] = found.array().ravel().tolist()
    except (OnnxFormatError, ValueError) as exc:
        raise NotCanonicalError(str(exc)) from None
    return values


def _tensor_type(tensor: Message) -> str:
    """Element type and dims; the exporter keeps every tensor's values in raw_data alone, so a
    tensor holding them elsewhere (which one wins is the reader's choice) renders otherwise."""
    element = tensor.get("data_type", 0)
    shown = f"{_ELEMENT.get(element, f'type{element}')}{tensor.get('dims', [])}"
    elsewhere = sorted(set(tensor) - {"name", "dims", "data_type", "raw_data"})
    if elsewhere or "raw_data" not in tensor:
        shown += f"<values in {', '.join(elsewhere) or 'no field'}>"
    return shown


def _attribute(attribute: Message) -> str:
    name, kind = attribute.get("name", ""), attribute.get("type", 0)
    shown: Any
    if kind == 1:
        shown = attribute.get("f", 0.0)
    elif kind == 2:
        shown = attribute.get("i", 0)
    elif kind == 3:
        shown = attribute.get("s", b"").decode("utf-8", "replace")
    elif kind == 4:
        tensor = attribute.get("t", {})
        values = _tensor_values(tensor)
        shown = f"{_tensor_type(tensor)}{values if len(values) <= 16 else '...'}"
    elif kind == 6:
        shown = attribute.get("floats", [])
    elif kind == 7:
        shown = attribute.get("ints", [])
    elif kind == 8:
        shown = [s.decode("utf-8", "replace") for s in attribute.get("strings", [])]
    else:
        shown = f"<type {kind}>"
    # a field of another type set beside the one the type names is refused, not ignored
    used = {1: "f", 2: "i", 3: "s", 4: "t", 6: "floats", 7: "ints", 8: "strings"}.get(kind)
    extra = sorted(set(attribute) - {"name", "type", used})
    if extra:
        return f"{name}=<{shown} with {', '.join(extra)}>"
    return f"{name}={shown}"


def _value_info(value: Message) -> str:
    tensor = value.get("type", {}).get("tensor_type", {})
    dims = [
        str(d["dim_value"]) if "dim_value" in d else d.get("dim_param", "?")
        for d in tensor.get("shape", {}).get("dim", [])
    ]
    element = tensor.get("elem_type", 0)
    return f"{value.get('name', '')}: {_ELEMENT.get(element, f'type{element}')}[{','.join(dims)}]"


def render(model: Message) -> list[str]:
    """The model as lines: header, inputs, outputs, initializers (shape only), then one line
    per node with every value renamed by where it comes from (%k: the k-th node output, wK:
    the K-th initializer), so that two exports of one architecture render the same."""
    graph: Message = model.get("graph", {})
    opsets = [
        f"{o.get('domain', '') or 'ai.onnx'} {o.get('version', 0)}"
        for o in model.get("opset_import", [])
    ]
    lines = [f"ir_version {model.get('ir_version', 0)}", f"opset_import {', '.join(opsets)}"]
    inputs = [v.get("name", "") for v in graph.get("input", [])]
    names: dict[str, str] = {name: name for name in inputs}
    lines += [f"input {_value_info(v)}" for v in graph.get("input", [])]
    lines += [f"output {_value_info(v)}" for v in graph.get("output", [])]
    for index, tensor in enumerate(graph.get("initializer", [])):
        name = tensor.get("name", "")
        if name in names:
            raise NotCanonicalError(
                f"initializer {name!r} has the name of a graph input or another initializer, "
                "so a caller could override it"
            )
        names[name] = f"w{index}"
        lines.append(f"initializer w{index}: {_tensor_type(tensor)}")
    outputs = {v.get("name", "") for v in graph.get("output", [])}
    produced = 0
    for node in graph.get("node", []):
        used = ", ".join(names.get(n, f"?{n}") if n else "''" for n in node.get("input", []))
        made = []
        for name in node.get("output", []):
            if name in names:
                raise NotCanonicalError(f"{name!r} is written twice in the graph")
            names[name] = name if name in outputs else f"%{produced}"
            produced += 1
            made.append(names[name])
        attributes = " ".join(sorted(_attribute(a) for a in node.get("attribute", [])))
        domain = node.get("domain", "")
        op = f"{domain}::{node.get('op_type', '')}" if domain else node.get("op_type", "")
        lines.append(f"{op}({used}) -> ({', '.join(made)}) {attributes}".rstrip())
    return lines


# The exporter's graph, with {H} the hidden size, {G} gates x H and {OP} the recurrent line.
_CANONICAL = """\
ir_version {IR}
opset_import ai.onnx {OPSET}
input digits: int64[batch,time]
output probabilities: float32[batch,time,10]
initializer w0: float32[10]
initializer w1: float32[1, {G}, 10]
initializer w2: float32[1, {G}, {H}]
initializer w3: float32[1, {G2}]
initializer w4: float32[{H}, 10]
Constant() -> (%0) value=int64[][10]
Constant() -> (%1) value=int64[2][0, 1]
OneHot(digits, %0, %1) -> (%2) axis=-1
Cast(%2) -> (%3) to=1
Shape(%3) -> (%4)
Constant() -> (%5) value=int64[][0]
Gather(%4, %5) -> (%6) axis=0
Constant() -> (%7) value=int64[1][1]
Constant() -> (%8) value=int64[1][0]
Unsqueeze(%6, %8) -> (%9)
Constant() -> (%10) value=int64[1][{H}]
Concat(%7, %9, %10) -> (%11) axis=0
ConstantOfShape(%11) -> (%12) value=float32[1][0.0]
Transpose(%3) -> (%13) perm=[1, 0, 2]
{OP}
Constant() -> (%{C}) value=int64[1][1]
Squeeze(%14, %{C}) -> (%{S})
Transpose(%{S}) -> (%{T}) perm=[1, 0, 2]
MatMul(%{T}, w4) -> (%{M})
Add(w0, %{M}) -> (%{A})
Softmax(%{A}) -> (probabilities) axis=-1"""

# The recurrent node as the exporter writes it for each cell (an RNN's activation is its
# nonlinearity: the exporter writes Tanh or Relu).
_RECURRENT = {
    "RNN": "RNN(%13, w1, w2, w3, '', %12) -> (%14, %15) activations={ACT} hidden_size={H}",
    "GRU": "GRU(%13, w1, w2, w3, '', %12) -> (%14, %15) hidden_size={H} linear_before_reset=1",
    "LSTM": "LSTM(%13, w1, w2, w3, '', %12, %12) -> (%14, %15, %16) hidden_size={H}",
}
_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
_NONLINEARITY = {"['Tanh']": "tanh", "['Relu']": "relu"}


def canonical_lines(op: str, hidden_size: int, activation: str = "['Tanh']") -> list[str]:
    """The rendering of the graph the exporter writes for this cell and hidden size."""
    gates = _GATES[op] * hidden_size
    first = 16 if op == "LSTM" else 15  # the node outputs after the recurrent op's
    line = _RECURRENT[op].format(ACT=activation, H=hidden_size)
    return _CANONICAL.format(
        IR=IR_VERSION,
        OPSET=OPSET,
        H=hidden_size,
        G=gates,
        G2=2 * gates,
        OP=line,
        C=first + 1,
        S=first + 2,
        T=first + 3,
        M=first + 4,
        A=first + 5,
    ).splitlines()


@dataclass(frozen=True)
class GraphFacts:
    """What the file itself says of the network: the figures a card must agree with."""

    cell: str  # "rnn", "gru" or "lstm"
    nonlinearity: str | None  # an RNN's: "tanh" or "relu"; None for a GRU or an LSTM
    hidden_size: int
    layers: int
    parameters: int  # every weight and bias: the initializers
    opset: int


def _recurrent(graph: Message) -> Message:
    found = [n for n in graph.get("node", []) if n.get("op_type") in _GATES]
    if len(found) != 1:
        ops = [n.get("op_type") for n in found] or "none"
        raise NotCanonicalError(f"the exporter writes one RNN, GRU or LSTM node; it has {ops}")
    node: Message = found[0]
    return node


def check_canonical(data: bytes) -> GraphFacts:
    """The facts of an ONNX file that is the exporter's graph; NotCanonicalError otherwise,
    naming the first place it differs."""
    try:
        model = _decode(data, "ModelProto")
    except (OnnxFormatError, IndexError, UnicodeDecodeError) as exc:
        raise NotCanonicalError(f"not an ONNX model: {exc}") from None
    graph = model.get("graph", {})
    node = _recurrent(graph)
    op = node["op_type"]
    attributes = {a.get("name"): a for a in node.get("attribute", [])}
    hidden = attributes.get("hidden_size", {}).get("i", 0)
    if not isinstance(hidden, int) or hidden < 1:
        raise NotCanonicalError(f"the {op} node has no positive hidden_size")
    activation = "['Tanh']"
    if op == "RNN":
        names = [
            s.decode("utf-8", "replace")
            for s in attributes.get("activations", {}).get("strings", [])
        ]
        activation = str(names)
        if activation not in _NONLINEARITY:
            raise NotCanonicalError(f"the RNN's activations are {names}, not Tanh or Relu")
    got, want = render(model), canonical_lines(op, hidden, activation)
    for index, (line, expected) in enumerate(zip(got, want, strict=False)):
        if line != expected:
            raise NotCanonicalError(
                f"line {index + 1} of its graph is `{line}`; the exporter writes `{expected}`"
            )
    if len(got) != len(want):
        more = len(got) > len(want)
        first = got[len(want)] if more else want[len(got)]
        raise NotCanonicalError(
            f"its graph has {'more' if more else 'fewer'} entries than the exporter writes: "
            f"{'extra' if more else 'missing'} `{first}`"
        )
    sizes = [int(np.prod(t.get("dims", []))) for t in graph.get("initializer", [])]
    return GraphFacts(
        cell=op.lower(),
        nonlinearity=_NONLINEARITY[activation] if op == "RNN" else None,
        hidden_size=hidden,
        layers=1,
        parameters=sum(sizes),
        opset=OPSET,
    )
