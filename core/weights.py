"""The weights of an exported counter, read back from its ONNX graph: what the proof reasons about.

Only the graph that training exports is read: a one-layer forward recurrent op (a tanh RNN, a
GRU or an LSTM, with ONNX's default activations) over one-hot digits from a zero state, then a
linear readout and a softmax, wired exactly so (see _check_wiring). Any other graph raises
UnsupportedModelError naming what differs, so the certificate never vouches for weights it did
not see in the place it assumes. Pure numpy, read with core.onnx_reader: no torch, no onnx.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from core.onnx_reader import FLOAT, Graph, Model, Node, Tensor, read_model

Array = npt.NDArray[np.float64]


class UnsupportedModelError(ValueError):
    """The graph is not a one-layer RNN, GRU or LSTM with a linear readout: the boxes do not
    apply."""


@dataclass(frozen=True)
class _CellWeights:
    """What every cell has: input, recurrent and bias weights with one block of H rows per gate
    (GATES, in ONNX's order), and the linear readout; shapes checked on construction."""

    w_ih: Array  # (gates x H, 10)
    w_hh: Array  # (gates x H, H)
    b_ih: Array  # (gates x H,)
    b_hh: Array  # (gates x H,)
    w_out: Array  # (10, H)
    b_out: Array  # (10,)

    GATES: ClassVar[tuple[str, ...]]
    OP: ClassVar[str]  # the ONNX op

    def __post_init__(self) -> None:
        gates, size = len(self.GATES), self.w_hh.shape[-1]
        shapes = {
            "w_ih": (self.w_ih.shape, (gates * size, 10)),
            "w_hh": (self.w_hh.shape, (gates * size, size)),
            "b_ih": (self.b_ih.shape, (gates * size,)),
            "b_hh": (self.b_hh.shape, (gates * size,)),
            "w_out": (self.w_out.shape, (10, size)),
            "b_out": (self.b_out.shape, (10,)),
        }
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"{type(self).__name__}.{name} has shape {got}, expected {want}")

    @property
    def hidden_size(self) -> int:
        return int(self.w_hh.shape[1])


@dataclass(frozen=True)
class RnnWeights(_CellWeights):
    """One-layer tanh RNN + linear readout.

    h' = tanh(w_ih[:, d] + b_ih + w_hh @ h + b_hh); logits = w_out @ h' + b_out.
    """

    GATES: ClassVar[tuple[str, ...]] = ("h",)
    OP: ClassVar[str] = "RNN"


@dataclass(frozen=True)
class GruWeights(_CellWeights):
    """One-layer GRU as ONNX's GRU op computes it with linear_before_reset = 1 (PyTorch's GRU)
    + linear readout. Gate blocks are in ONNX's order z, r, h (PyTorch stores r, z, n):

    z = sigmoid(w_ih[z] x + b_ih[z] + w_hh[z] h + b_hh[z]), r likewise,
    n = tanh(w_ih[h] x + b_ih[h] + r * (w_hh[h] h + b_hh[h])), h' = (1 - z) * n + z * h;
    logits = w_out @ h' + b_out.
    """

    GATES: ClassVar[tuple[str, ...]] = ("z", "r", "h")
    OP: ClassVar[str] = "GRU"


@dataclass(frozen=True)
class LstmWeights(_CellWeights):
    """One-layer LSTM as ONNX's LSTM op computes it (no peepholes, no clip, no coupled input
    and forget gates) + linear readout. Gate blocks are in ONNX's order i, o, f, c (PyTorch
    stores i, f, g, o):

    i = sigmoid(w_ih[i] x + b_ih[i] + w_hh[i] h + b_hh[i]), o and f likewise, g = tanh(...
    the c block), c' = f * c + i * g, h' = o * tanh(c'); logits = w_out @ h' + b_out.
    """

    GATES: ClassVar[tuple[str, ...]] = ("i", "o", "f", "c")
    OP: ClassVar[str] = "LSTM"


Weights = RnnWeights | GruWeights | LstmWeights


def _constants(graph: Graph) -> dict[str, npt.NDArray[np.float64]]:
    """Every initializer and Constant output of the graph, by name."""
    values = {t.name: t.array() for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    if attribute.t is None or not node.output:
                        raise UnsupportedModelError(f"Constant {node.name!r} has no tensor value")
                    values[node.output[0]] = attribute.t.array()
    return {name: np.asarray(value, dtype=np.float64) for name, value in values.items()}


# What the legacy exporter emits for training's Probabilities(Counter): the value path OneHot ->
# Cast -> Transpose -> RNN | GRU | LSTM -> Squeeze -> Transpose -> MatMul -> Add -> Softmax, and
# the shape arithmetic (Shape, Gather, Unsqueeze, Concat) that sizes the zero initial state.
EXPORTED_OPS = frozenset(
    {
        "Constant",
        "OneHot",
        "Cast",
        "Shape",
        "Gather",
        "Unsqueeze",
        "Concat",
        "ConstantOfShape",
        "Transpose",
        "Squeeze",
        "RNN",
        "GRU",
        "LSTM",
        "MatMul",
        "Add",
        "Softmax",
    }
)
_TIME_MAJOR = [1, 0, 2]  # (B, T, .) <-> (T, B, .)


def _check_wiring(graph: Graph, values: dict[str, Array], rnn: Node) -> tuple[Node, Node]:
    """Check the one value path digits -> probabilities around the recurrent op (RNN, GRU or
    LSTM); return its readout's MatMul and Add.

    The boxes are sound only for exactly softmax(W_out cell(one_hot(digits)) + b_out) from a
    zero state: any other op, or the same ops wired otherwise, is declined with
    UnsupportedModelError.
    """
    unexpected = sorted({n.op_type for n in graph.node} - EXPORTED_OPS)
    if unexpected:
        raise UnsupportedModelError(
            f"the box certificate covers one-hot -> {rnn.op_type} -> linear -> softmax as "
            f"training exports it; this graph also has {', '.join(unexpected)}"
        )
    inputs, outputs = [i.name for i in graph.input], [o.name for o in graph.output]
    if inputs != ["digits"] or outputs != ["probabilities"]:
        raise UnsupportedModelError(
            f"expected input ['digits'] and output ['probabilities'], got {inputs} and {outputs}"
        )
    producer: dict[str, Node] = {out: n for n in graph.node for out in n.output if out}

    def source(name: str, op: str) -> Node:
        node = producer.get(name)
        if node is None or node.op_type != op:
            found = "an input or initializer" if node is None else f"a {node.op_type}"
            raise UnsupportedModelError(
                f"expected {name!r} to come from a {op} on the path digits -> probabilities, "
                f"found {found}"
            )
        return node

    def attribute(node: Node, name: str, default: object = None) -> object:
        found = [a.value() for a in node.attribute if a.name == name]
        return found[0] if found else default

    def constant(name: str, want: list[float]) -> None:
        if name not in values or values[name].ravel().tolist() != want:
            raise UnsupportedModelError(f"expected {name!r} to be the constant {want}")

    def layout(node: Node) -> None:
        if attribute(node, "perm") != _TIME_MAJOR:
            raise UnsupportedModelError(f"expected {node.name or 'a Transpose'} to swap B and T")

    softmax = source("probabilities", "Softmax")
    if attribute(softmax, "axis", -1) not in (-1, 2):
        raise UnsupportedModelError("expected the softmax over the last (digit) axis")
    add = source(softmax.input[0], "Add")
    variable = [name for name in add.input if name not in values]
    if len(variable) != 1:
        raise UnsupportedModelError("expected the readout's bias Add to add one constant")
    matmul = source(variable[0], "MatMul")
    if matmul.input[1] not in values:
        raise UnsupportedModelError("expected the readout MatMul to have a constant weight")
    after = source(matmul.input[0], "Transpose")
    layout(after)
    squeeze = source(after.input[0], "Squeeze")
    constant(squeeze.input[1], [1])  # drop the direction axis of Y (T, 1, B, H)
    op = rnn.op_type
    if squeeze.input[0] != rnn.output[0]:
        raise UnsupportedModelError(f"expected the readout to read the {op}'s Y, every step")
    before = source(rnn.input[0], "Transpose")
    layout(before)
    cast = source(before.input[0], "Cast")
    if attribute(cast, "to") != FLOAT:
        raise UnsupportedModelError("expected the one-hot digits cast to float32")
    onehot = source(cast.input[0], "OneHot")
    if onehot.input[0] != "digits" or attribute(onehot, "axis", -1) != -1:
        raise UnsupportedModelError(f"expected the {op} to read one_hot(digits) on the last axis")
    constant(onehot.input[1], [10])
    constant(onehot.input[2], [0, 1])
    if len(rnn.input) < 3 or any(name and name not in values for name in rnn.input[1:4]):
        raise UnsupportedModelError(f"expected the {op}'s W, R and B to be constants")
    if len(rnn.input) > 4 and rnn.input[4]:
        raise UnsupportedModelError(f"expected no sequence_lens on the {op}")
    # initial_h (input 5), and the LSTM's initial_c (6): absent or zeros.
    for index, state in [(5, "h0"), (6, "c0")][: 2 if op == "LSTM" else 1]:
        if len(rnn.input) > index and rnn.input[index]:
            fill = attribute(source(rnn.input[index], "ConstantOfShape"), "value")  # None: 0
            if isinstance(fill, Tensor) and np.any(fill.array()):
                raise UnsupportedModelError(f"expected the {op} to start from {state} = 0")
    if op == "LSTM" and len(rnn.input) > 7 and rnn.input[7]:
        raise UnsupportedModelError("expected no peephole weights P on the LSTM")
    return matmul, add


class Serializable(Protocol):
    """An in-memory model that can give its file's bytes (onnx.ModelProto, in training)."""

    def SerializeToString(self) -> bytes: ...  # noqa: N802 (protobuf's name)


ModelSource = str | Path | bytes | Serializable


def load_graph(model: ModelSource) -> Model:
    """The graph of an ONNX model given as a path, the bytes of a file, or an in-memory model."""
    if isinstance(model, bytes):
        return read_model(model)
    if isinstance(model, str | Path):
        return read_model(Path(model).read_bytes())
    return read_model(model.SerializeToString())


# The attributes each op may have, with the only values the boxes cover (None: any value).
# The activations are ONNX's defaults, which PyTorch's cells compute; the GRU must apply its
# reset gate after the recurrent product (linear_before_reset = 1), as PyTorch's GRU does.
_COVERED: dict[str, dict[str, object]] = {
    "RNN": {"hidden_size": None, "activations": [b"Tanh"], "direction": b"forward", "layout": 0},
    "GRU": {
        "hidden_size": None,
        "activations": [b"Sigmoid", b"Tanh"],
        "direction": b"forward",
        "layout": 0,
        "linear_before_reset": 1,
    },
    "LSTM": {
        "hidden_size": None,
        "activations": [b"Sigmoid", b"Tanh", b"Tanh"],
        "direction": b"forward",
        "layout": 0,
        "input_forget": 0,
    },
}
_DEFAULTS = {"direction": b"forward", "layout": 0, "linear_before_reset": 0, "input_forget": 0}
_GATES = {cell.OP: len(cell.GATES) for cell in (RnnWeights, GruWeights, LstmWeights)}


def _check_attributes(node: Node) -> None:
    """The op's attributes are the ones the cell's image computes (see _COVERED)."""
    covered = _COVERED[node.op_type]
    attributes = {a.name: a.value() for a in node.attribute}
    for name, value in attributes.items():
        if name not in covered:
            raise UnsupportedModelError(
                f"the box certificate covers {node.op_type}s without {name!r}; this one has "
                f"{name} = {value!r}"
            )
    for name, want in covered.items():
        if want is None:
            continue
        got = attributes.get(name, want if name == "activations" else _DEFAULTS[name])
        if (list(got) if isinstance(got, list | tuple) else got) != want:
            raise UnsupportedModelError(
                f"the box certificate covers {node.op_type}s with {name} = {want!r}; this one "
                f"has {got!r}"
            )


def recurrent_weights_from_onnx(model: ModelSource) -> Weights:
    """The RNN, GRU or LSTM op's W, R, B and the MatMul/Add readout of an exported model.

    Only the graph training exports is read (see _check_wiring and _COVERED): anything else
    raises UnsupportedModelError, naming what differs.
    """
    graph = load_graph(model).graph
    recurrent = [n for n in graph.node if n.op_type in _GATES]
    if len(recurrent) != 1:
        ops = [n.op_type for n in recurrent] or "no recurrent op"
        raise UnsupportedModelError(
            f"the box certificate covers one-layer RNNs, GRUs and LSTMs; this graph has {ops}"
        )
    node = recurrent[0]
    _check_attributes(node)
    values = _constants(graph)
    matmul, add = _check_wiring(graph, values, node)
    w_ih, w_hh = values[node.input[1]][0], values[node.input[2]][0]  # (G H, 10), (G H, H)
    gates = _GATES[node.op_type] * w_hh.shape[1]
    declared = [a.value() for a in node.attribute if a.name == "hidden_size"]
    if declared and declared[0] != w_hh.shape[1]:
        raise UnsupportedModelError(f"hidden_size {declared[0]} but R has {w_hh.shape[1]} columns")
    has_bias = len(node.input) > 3 and node.input[3]
    bias = values[node.input[3]][0] if has_bias else np.zeros(2 * gates)  # Wb then Rb
    b_out = next(values[name] for name in add.input if name in values)
    kind = next(k for k in (RnnWeights, GruWeights, LstmWeights) if node.op_type == k.OP)
    try:
        return kind(
            w_ih=w_ih,
            w_hh=w_hh,
            b_ih=bias[:gates],
            b_hh=bias[gates:],
            w_out=values[matmul.input[1]].T,  # stored (H, 10) for x @ W
            b_out=b_out,
        )
    except ValueError as error:
        raise UnsupportedModelError(f"the {node.op_type}'s weights do not fit: {error}") from None


def weights_from_onnx(path: ModelSource) -> RnnWeights:
    """Read a tanh RNN's weights (recurrent_weights_from_onnx for any cell); a graph with
    another cell raises UnsupportedModelError."""
    weights = recurrent_weights_from_onnx(path)
    if not isinstance(weights, RnnWeights):
        kind = type(weights).__name__.removesuffix("Weights").upper()
        raise UnsupportedModelError(f"expected a tanh RNN; this graph has a {kind}")
    return weights
