"""The one graph the service runs: an ONNX file is served only if it is, node for node, the graph
training's exporter writes (training.onnx_graph: torch.onnx's legacy exporter, opset 17).

Why this and not a graph rebuilt from the weights: the proof (core.certify) reads the weights,
not the graph around them, so a file could keep the weights and change what runs (a node moved
to a custom domain backed by a model-local function, a second output, an initializer a caller
can override). Rebuilding the graph would need an ONNX writer in the service (the `onnx` package
is not installed there) and would serve a file that no card figure was measured on. Checking the
file against the exporter's graph keeps "what was measured is what is served" and needs only
this: a schema-checked read of the protobuf wire format (core.onnx_strict: every field the
exporter never writes is refused, and so is a field that may appear once appearing twice, since
protobuf merges such repeats and a reader taking the last would see another graph than
onnxruntime), the graph rendered one line per node with values renamed by position
(core.graph_lines), and that rendering compared line by line with the exporter's, which depends
only on the cell and the hidden size. What the file says (cell, hidden size, parameters, opset)
is returned, so the service shows figures of the file, not of the card.
"""

from dataclasses import dataclass

import numpy as np

from core.graph_lines import render
from core.onnx_reader import OnnxFormatError
from core.onnx_strict import Message, NotCanonicalError, decode

# What torch 2.13's legacy exporter writes (constraints.txt pins torch).
IR_VERSION = 8
OPSET = 17


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
        model = decode(data, "ModelProto")
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
