"""The weights of an exported counter, read back from its ONNX graph: what the proof reasons about.

Only the graph that training exports is read: a one-layer forward tanh RNN over one-hot digits
from h0 = 0, then a linear readout and a softmax, wired exactly so (see _check_wiring). Any other
graph raises UnsupportedModelError naming what differs, so the certificate never vouches for
weights it did not see in the place it assumes. Pure numpy and onnx, no torch.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper

Array = npt.NDArray[np.float64]


class UnsupportedModelError(ValueError):
    """The graph is not a one-layer tanh RNN with a linear readout: the boxes do not apply."""


@dataclass(frozen=True)
class RnnWeights:
    """One-layer tanh RNN + linear readout.

    h' = tanh(w_ih[:, d] + b_ih + w_hh @ h + b_hh); logits = w_out @ h' + b_out.
    """

    w_ih: Array  # (H, 10)
    w_hh: Array  # (H, H)
    b_ih: Array  # (H,)
    b_hh: Array  # (H,)
    w_out: Array  # (10, H)
    b_out: Array  # (10,)

    def __post_init__(self) -> None:
        size = self.w_hh.shape[0]
        shapes = {
            "w_ih": (self.w_ih.shape, (size, 10)),
            "w_hh": (self.w_hh.shape, (size, size)),
            "b_ih": (self.b_ih.shape, (size,)),
            "b_hh": (self.b_hh.shape, (size,)),
            "w_out": (self.w_out.shape, (10, size)),
            "b_out": (self.b_out.shape, (10,)),
        }
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"RnnWeights.{name} has shape {got}, expected {want}")

    @property
    def hidden_size(self) -> int:
        return int(self.w_hh.shape[0])


def _constants(graph: onnx.GraphProto) -> dict[str, npt.NDArray[np.float64]]:
    """Every initializer and Constant output of the graph, by name."""
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attribute.t)
    return {name: np.asarray(value, dtype=np.float64) for name, value in values.items()}


# What the legacy exporter emits for training's Probabilities(Counter) with an RNN cell: the
# value path OneHot -> Cast -> Transpose -> RNN -> Squeeze -> Transpose -> MatMul -> Add ->
# Softmax, and the shape arithmetic (Shape, Gather, Unsqueeze, Concat) that sizes the zero h0.
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
        "MatMul",
        "Add",
        "Softmax",
    }
)
_TIME_MAJOR = [1, 0, 2]  # (B, T, .) <-> (T, B, .)


def _check_wiring(
    graph: onnx.GraphProto, values: dict[str, Array], rnn: onnx.NodeProto
) -> tuple[onnx.NodeProto, onnx.NodeProto]:
    """Check the one value path digits -> probabilities around the RNN; its MatMul and Add.

    The boxes are sound only for exactly softmax(W_out RNN(one_hot(digits)) + b_out) with h0 = 0:
    any other op, or the same ops wired otherwise, is declined with UnsupportedModelError.
    """
    unexpected = sorted({n.op_type for n in graph.node} - EXPORTED_OPS)
    if unexpected:
        raise UnsupportedModelError(
            "the box certificate covers one-hot -> RNN -> linear -> softmax as training exports "
            f"it; this graph also has {', '.join(unexpected)}"
        )
    inputs, outputs = [i.name for i in graph.input], [o.name for o in graph.output]
    if inputs != ["digits"] or outputs != ["probabilities"]:
        raise UnsupportedModelError(
            f"expected input ['digits'] and output ['probabilities'], got {inputs} and {outputs}"
        )
    producer: dict[str, onnx.NodeProto] = {out: n for n in graph.node for out in n.output if out}

    def source(name: str, op: str) -> onnx.NodeProto:
        node = producer.get(name)
        if node is None or node.op_type != op:
            found = "an input or initializer" if node is None else f"a {node.op_type}"
            raise UnsupportedModelError(
                f"expected {name!r} to come from a {op} on the path digits -> probabilities, "
                f"found {found}"
            )
        return node

    def attribute(node: onnx.NodeProto, name: str, default: object = None) -> object:
        found = [helper.get_attribute_value(a) for a in node.attribute if a.name == name]
        return found[0] if found else default

    def constant(name: str, want: list[float]) -> None:
        if name not in values or values[name].ravel().tolist() != want:
            raise UnsupportedModelError(f"expected {name!r} to be the constant {want}")

    def layout(node: onnx.NodeProto) -> None:
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
    if squeeze.input[0] != rnn.output[0]:
        raise UnsupportedModelError("expected the readout to read the RNN's Y, every step")
    before = source(rnn.input[0], "Transpose")
    layout(before)
    cast = source(before.input[0], "Cast")
    if attribute(cast, "to") != onnx.TensorProto.FLOAT:
        raise UnsupportedModelError("expected the one-hot digits cast to float32")
    onehot = source(cast.input[0], "OneHot")
    if onehot.input[0] != "digits" or attribute(onehot, "axis", -1) != -1:
        raise UnsupportedModelError("expected the RNN to read one_hot(digits) on the last axis")
    constant(onehot.input[1], [10])
    constant(onehot.input[2], [0, 1])
    if any(name and name not in values for name in rnn.input[1:4]):
        raise UnsupportedModelError("expected the RNN's W, R and B to be constants")
    if len(rnn.input) > 4 and rnn.input[4]:
        raise UnsupportedModelError("expected no sequence_lens on the RNN")
    if len(rnn.input) > 5 and rnn.input[5]:
        fill = attribute(source(rnn.input[5], "ConstantOfShape"), "value")  # absent: zeros
        if isinstance(fill, onnx.TensorProto) and np.any(numpy_helper.to_array(fill)):
            raise UnsupportedModelError("expected the RNN to start from h0 = 0")
    return matmul, add


def load_graph(model: str | Path | bytes | onnx.ModelProto) -> onnx.ModelProto:
    """An ONNX model from a path, the bytes of a file, or as it is."""
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, bytes):
        return onnx.load_model_from_string(model)
    return onnx.load(str(model))


def weights_from_onnx(path: str | Path | bytes | onnx.ModelProto) -> RnnWeights:
    """Read the RNN op's W, R, B and the MatMul/Add readout of an exported model.

    Only the graph training exports is read (see _check_wiring): anything else raises
    UnsupportedModelError, naming what differs.
    """
    graph = load_graph(path).graph
    recurrent = [n for n in graph.node if n.op_type in ("RNN", "GRU", "LSTM")]
    if len(recurrent) != 1 or recurrent[0].op_type != "RNN":
        ops = [n.op_type for n in recurrent] or "no recurrent op"
        raise UnsupportedModelError(
            f"the box certificate covers one-layer tanh RNNs; this graph has {ops}"
        )
    node = recurrent[0]
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    activations = attributes.get("activations", [b"Tanh"])
    direction = attributes.get("direction", b"forward")
    if list(activations) != [b"Tanh"] or "clip" in attributes or direction != b"forward":
        raise UnsupportedModelError(
            f"the box certificate covers forward tanh RNNs; this RNN has activations "
            f"{activations}, direction {direction!r} and clip {attributes.get('clip')}"
        )
    values = _constants(graph)
    matmul, add = _check_wiring(graph, values, node)
    w_ih, w_hh = values[node.input[1]][0], values[node.input[2]][0]  # (H, 10), (H, H)
    size = w_hh.shape[0]
    has_bias = len(node.input) > 3 and node.input[3]
    bias = values[node.input[3]][0] if has_bias else np.zeros(2 * size)  # (2H,): Wb then Rb
    b_out = next(values[name] for name in add.input if name in values)
    return RnnWeights(
        w_ih=w_ih,
        w_hh=w_hh,
        b_ih=bias[:size],
        b_hh=bias[size:],
        w_out=values[matmul.input[1]].T,  # stored (H, 10) for x @ W
        b_out=b_out,
    )
