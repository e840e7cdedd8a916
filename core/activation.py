"""The error of the tanh and sigmoid that onnxruntime's recurrent ops compute, measured on the
onnxruntime here.

The certificate allows each deployed tanh and sigmoid an absolute error
(core.certify.DEFAULT_TANH_ERROR); that allowance is only sound if the onnxruntime that runs
the model stays within it. Each op has its own kernels: the RNN op and the LSTM op call MLAS's
tanh and logistic, while the GRU op computes its reset gate's sigmoid and its hidden gate's
tanh with rational approximations of its own, and its update gate with MLAS's logistic. So
each is measured through the op that uses it: a one-step probe graph of that op whose weights
make one output equal to that activation of one input value, computed by the kernel itself.
The service measures a dense grid at start; bench/tanh_error.py runs every float32 value.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper

from core.session import open_session

WIDTH = 16  # values per time step: the hidden size of the shipped models
SPAN = 20.0  # beyond |x| = 20, float32 tanh is +-1 exactly and sigmoid within 2.1e-9 of 0 or 1
GRID = 1 << 20  # points of the start-up check
# A gate pre-activation that saturates every kernel's sigmoid to exactly 0 or 1 in float32
# (MLAS clamps its input to +-18 and its output to [0, 1]; tests check the exactness).
SATURATED = 100.0

Function = Literal["tanh", "sigmoid"]
Floats = npt.NDArray[np.float32]
Array = npt.NDArray[np.float64]


def _tensor(name: str, value: npt.NDArray[np.float64]) -> onnx.TensorProto:
    array = np.asarray(value, dtype=np.float32)
    return helper.make_tensor(name, TensorProto.FLOAT, array.shape, array.ravel())


def _model(op: str, weights: list[Array], **attributes: Any) -> onnx.ModelProto:
    """One step of a recurrent op with constant W, R, B (gate blocks in the op's order): output
    Y (1, 1, batch, WIDTH); graph inputs X (1, batch, WIDTH) and the op's initial states."""
    states = {"RNN": [], "GRU": ["initial_h"], "LSTM": ["initial_h", "initial_c"]}[op]
    inputs = ["X", "W", "R", "B" if len(weights) > 2 else "", "", *states]
    value = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, "batch", WIDTH]) for n in states
    ]
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["Y"], hidden_size=WIDTH, **attributes)],
        f"{op.lower()}_probe",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, "batch", WIDTH]), *value],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [_tensor(name, w[None]) for name, w in zip(("W", "R", "B"), weights, strict=False)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


_I = np.eye(WIDTH)
_O = np.zeros((WIDTH, WIDTH))
_ZERO = np.zeros(WIDTH)
_ON = np.full(WIDTH, SATURATED)  # a gate pre-activation that makes the gate exactly 1


@dataclass(frozen=True)
class _Probe:
    """A probe graph, and how the values to measure are fed: as X, h0 or c0 (the rest 0)."""

    function: Function
    model: onnx.ModelProto
    values_as: str  # the graph input the values go in
    fill: dict[str, float] = field(default_factory=dict)  # other inputs' constant value


def _rnn_tanh() -> _Probe:
    """RNN with W = I, R = 0, no bias: Y = tanh(X)."""
    return _Probe("tanh", _model("RNN", [_I, _O]), "X")


def _gru(activations: list[str], w: list[Array], b: list[Array]) -> onnx.ModelProto:
    """A GRU as PyTorch exports it (gates z, r, h; linear_before_reset = 1), R = 0."""
    weights = [np.concatenate(w), np.concatenate([_O, _O, _O]), np.concatenate(b)]
    return _model("GRU", weights, activations=activations, linear_before_reset=1)


def _gru_update_sigmoid() -> _Probe:
    """z = sigmoid(X), hidden gate tanh(0) = 0, h0 = 1: Y = (1 - z) 0 + z 1 = z exactly."""
    model = _gru(["Sigmoid", "Tanh"], [_I, _O, _O], [_ZERO] * 6)
    return _Probe("sigmoid", model, "X", {"initial_h": 1.0})


def _gru_reset_sigmoid() -> _Probe:
    """r = sigmoid(X), Rb_h = 1 and a ReLU hidden gate: n = relu(r 1) = r; z = 0 exactly,
    h0 = 0: Y = (1 - 0) r + 0 h0 = r. The reset gate's kernel is chosen by the first
    activation (Sigmoid) alone, so it is the one a default GRU runs."""
    bias = [-_ON, _ZERO, _ZERO, _ZERO, _ZERO, np.ones(WIDTH)]  # Wb z r h, then Rb z r h
    return _Probe("sigmoid", _gru(["Sigmoid", "Relu"], [_O, _I, _O], bias), "X")


def _gru_hidden_tanh() -> _Probe:
    """n = tanh(X) (R = 0: the reset gate multiplies 0), z = 0 exactly, h0 = 0: Y = n."""
    bias = [-_ON, _ZERO, _ZERO, _ZERO, _ZERO, _ZERO]
    return _Probe("tanh", _gru(["Sigmoid", "Tanh"], [_O, _O, _I], bias), "X")


def _lstm(w: list[Array], b: list[Array]) -> onnx.ModelProto:
    """An LSTM as PyTorch exports it (gates i, o, f, c), R = 0."""
    weights = [np.concatenate(w), np.concatenate([_O] * 4), np.concatenate(b)]
    return _model("LSTM", weights)


def _lstm_sigmoid() -> _Probe:
    """o = sigmoid(X); f = 1 and i g = 0 keep c = c0 = SPAN, whose tanh is 1: Y = o."""
    model = _lstm([_O, _I, _O, _O], [-_ON, _ZERO, _ON, _ZERO] + [_ZERO] * 4)
    return _Probe("sigmoid", model, "X", {"initial_c": SPAN})


def _lstm_tanh() -> _Probe:
    """c = f c0 + i g = 1 c0 + 0 g (the values fed as c0); o = 1: Y = tanh(c0)."""
    model = _lstm([_O] * 4, [-_ON, _ON, _ON, _ZERO] + [_ZERO] * 4)
    return _Probe("tanh", model, "initial_c")


# Every kernel a certified graph runs, by op and gate, with its probe.
KERNELS: dict[str, Callable[[], _Probe]] = {
    "RNN tanh": _rnn_tanh,
    "GRU update gate sigmoid": _gru_update_sigmoid,
    "GRU reset gate sigmoid": _gru_reset_sigmoid,
    "GRU hidden gate tanh": _gru_hidden_tanh,
    "LSTM gate sigmoid": _lstm_sigmoid,
    "LSTM cell tanh": _lstm_tanh,
}


def exact(function: Function, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """tanh or the logistic sigmoid in float64."""
    if function == "tanh":
        return np.tanh(values)
    with np.errstate(over="ignore"):
        result: npt.NDArray[np.float64] = 1 / (1 + np.exp(-values))
    return result


class KernelProbe:
    """An onnxruntime session that computes one kernel's activation of any float32 values."""

    def __init__(self, kernel: str) -> None:
        self.kernel = kernel
        self._probe = KERNELS[kernel]()
        self.function = self._probe.function
        self._session = open_session(self._probe.model.SerializeToString())
        self._inputs = [i.name for i in self._probe.model.graph.input]

    def __call__(self, values: Floats) -> Floats:
        """onnxruntime's activation of each value (any shape)."""
        flat = np.ascontiguousarray(values, dtype=np.float32).ravel()
        rows = -(-flat.size // WIDTH)
        padded = np.zeros(rows * WIDTH, dtype=np.float32)
        padded[: flat.size] = flat
        batch = padded.reshape(1, rows, WIDTH)  # one step, one row per WIDTH values
        feeds = {
            name: batch
            if name == self._probe.values_as
            else np.full_like(batch, self._probe.fill.get(name, 0.0))
            for name in self._inputs
        }
        (out,) = self._session.run(None, feeds)
        result: Floats = np.asarray(out).ravel()[: flat.size]
        return result.reshape(np.shape(values))

    def max_error(self, values: Floats) -> float:
        """The largest |ort f(x) - f(x)| over the values, f(x) in float64."""
        reference = exact(self.function, np.asarray(values, dtype=np.float64))
        return float(np.abs(self(values).astype(np.float64) - reference).max())


class TanhProbe(KernelProbe):
    """The RNN kernel's tanh (the op of the post's model)."""

    def __init__(self) -> None:
        super().__init__("RNN tanh")

    def tanh(self, values: Floats) -> Floats:
        """onnxruntime's tanh of each value (any shape)."""
        return self(values)


def grid(points: int = GRID) -> Floats:
    """A dense grid over [-SPAN, SPAN], plus the float32 values around 0 (tiny inputs)."""
    tiny = np.float32(2.0) ** -np.arange(1, 127, dtype=np.float32)
    return np.concatenate([np.linspace(-SPAN, SPAN, points, dtype=np.float32), tiny, -tiny]).astype(
        np.float32
    )


def measured_errors(points: int = GRID) -> dict[str, float]:
    """Each kernel's largest error over a dense grid."""
    values = grid(points)
    return {kernel: KernelProbe(kernel).max_error(values) for kernel in KERNELS}


def _largest(function: Function, points: int) -> float:
    values = grid(points)
    return max(
        KernelProbe(kernel).max_error(values)
        for kernel in KERNELS
        if KERNELS[kernel]().function == function
    )


def measured_tanh_error(points: int = GRID) -> float:
    """The start-up check: the largest tanh error of any recurrent op's kernel, over a grid."""
    return _largest("tanh", points)


def measured_sigmoid_error(points: int = GRID) -> float:
    """The largest sigmoid error of any recurrent op's kernel (GRU and LSTM), over a grid."""
    return _largest("sigmoid", points)
