"""Build the probe graphs core.activation runs to measure onnxruntime's tanh and sigmoids.

The service does not import the `onnx` package (see core.onnx_reader), so the probes ship as
files, core/probes/*.onnx, written by `python -m training.probes`; tests check that the files
hold the graphs built here. Each graph is one step of a recurrent op with constant W, R and B
whose output Y is exactly one activation of the values fed in: each builder says why.
"""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper

from core.activation import KERNELS, PROBES, SATURATED, WIDTH

Array = npt.NDArray[np.float64]
OPSET = 17

_I = np.eye(WIDTH)
_O = np.zeros((WIDTH, WIDTH))
_ZERO = np.zeros(WIDTH)
_ON = np.full(WIDTH, SATURATED)  # a gate pre-activation that makes the gate exactly 1


def _tensor(name: str, value: Array) -> onnx.TensorProto:
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
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def _rnn_tanh() -> onnx.ModelProto:
    """RNN with W = I, R = 0, no bias: Y = tanh(X)."""
    return _model("RNN", [_I, _O])


def _gru(activations: list[str], w: list[Array], b: list[Array]) -> onnx.ModelProto:
    """A GRU as PyTorch exports it (gates z, r, h; linear_before_reset = 1), R = 0."""
    weights = [np.concatenate(w), np.concatenate([_O, _O, _O]), np.concatenate(b)]
    return _model("GRU", weights, activations=activations, linear_before_reset=1)


def _gru_update_sigmoid() -> onnx.ModelProto:
    """z = sigmoid(X), hidden gate tanh(0) = 0, h0 = 1 (fed): Y = (1 - z) 0 + z 1 = z."""
    return _gru(["Sigmoid", "Tanh"], [_I, _O, _O], [_ZERO] * 6)


def _gru_reset_sigmoid() -> onnx.ModelProto:
    """r = sigmoid(X), Rb_h = 1 and a ReLU hidden gate: n = relu(r 1) = r; z = 0 exactly,
    h0 = 0: Y = (1 - 0) r + 0 h0 = r. The reset gate's kernel is chosen by the first
    activation (Sigmoid) alone, so it is the one a default GRU runs."""
    bias = [-_ON, _ZERO, _ZERO, _ZERO, _ZERO, np.ones(WIDTH)]  # Wb z r h, then Rb z r h
    return _gru(["Sigmoid", "Relu"], [_O, _I, _O], bias)


def _gru_hidden_tanh() -> onnx.ModelProto:
    """n = tanh(X) (R = 0: the reset gate multiplies 0), z = 0 exactly, h0 = 0: Y = n."""
    bias = [-_ON, _ZERO, _ZERO, _ZERO, _ZERO, _ZERO]
    return _gru(["Sigmoid", "Tanh"], [_O, _O, _I], bias)


def _lstm(w: list[Array], b: list[Array]) -> onnx.ModelProto:
    """An LSTM as PyTorch exports it (gates i, o, f, c), R = 0."""
    weights = [np.concatenate(w), np.concatenate([_O] * 4), np.concatenate(b)]
    return _model("LSTM", weights)


def _lstm_sigmoid() -> onnx.ModelProto:
    """o = sigmoid(X); f = 1 and i g = 0 keep c = c0 = SPAN (fed), whose tanh is 1: Y = o."""
    return _lstm([_O, _I, _O, _O], [-_ON, _ZERO, _ON, _ZERO] + [_ZERO] * 4)


def _lstm_tanh() -> onnx.ModelProto:
    """c = f c0 + i g = 1 c0 + 0 g (the values fed as c0); o = 1: Y = tanh(c0)."""
    return _lstm([_O] * 4, [-_ON, _ON, _ON, _ZERO] + [_ZERO] * 4)


# core.activation.KERNELS names each probe's file and how its inputs are fed.
GRAPHS: dict[str, Callable[[], onnx.ModelProto]] = {
    "RNN tanh": _rnn_tanh,
    "GRU update gate sigmoid": _gru_update_sigmoid,
    "GRU reset gate sigmoid": _gru_reset_sigmoid,
    "GRU hidden gate tanh": _gru_hidden_tanh,
    "LSTM gate sigmoid": _lstm_sigmoid,
    "LSTM cell tanh": _lstm_tanh,
}


def write(directory: Path = PROBES) -> list[Path]:
    """Write every probe graph where core.activation reads it; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kernel, build in GRAPHS.items():
        path = directory / KERNELS[kernel].file
        path.write_bytes(build().SerializeToString())
        written.append(path)
    return written


if __name__ == "__main__":
    for written in write(Path(sys.argv[1]) if len(sys.argv) > 1 else PROBES):
        print(written)
