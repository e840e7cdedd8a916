"""The error of the tanh and sigmoid that onnxruntime's recurrent ops compute, measured on the
onnxruntime here.

The certificate allows each deployed tanh and sigmoid an absolute error
(core.certify.DEFAULT_TANH_ERROR); that allowance is only sound if the onnxruntime that runs
the model stays within it. Each op has its own kernels: the RNN op and the LSTM op call MLAS's
tanh and logistic, while the GRU op computes its reset gate's sigmoid and its hidden gate's
tanh with rational approximations of its own, and its update gate with MLAS's logistic. So
each is measured through the op that uses it: a one-step probe graph of that op whose weights
make one output equal to that activation of one input value, computed by the kernel itself.
The probes ship as files (core/probes, written by training/probes.py): the service does not
import the onnx package.
The service measures a dense grid at start; bench/tanh_error.py runs every float32 value.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from core.onnx_reader import read_model
from core.session import open_session

WIDTH = 16  # values per time step: the hidden size of the shipped models
SPAN = 20.0  # beyond |x| = 20, float32 tanh is +-1 exactly and sigmoid within 2.1e-9 of 0 or 1
GRID = 1 << 20  # points of the start-up check
# A gate pre-activation that saturates every kernel's sigmoid to exactly 0 or 1 in float32
# (MLAS clamps its input to +-18 and its output to [0, 1]; tests check the exactness).
SATURATED = 100.0

Function = Literal["tanh", "sigmoid"]
Floats = npt.NDArray[np.float32]
PROBES = Path(__file__).parent / "probes"


@dataclass(frozen=True)
class Probe:
    """A probe graph (built by training/probes.py, which says why each computes exactly its
    activation) and how the values to measure are fed: as X, h0 or c0, the rest constant."""

    function: Function
    file: str  # in PROBES
    values_as: str  # the graph input the values go in
    fill: dict[str, float] = field(default_factory=dict)  # other inputs' constant value (or 0)

    def model(self) -> bytes:
        """The probe graph's ONNX bytes."""
        return (PROBES / self.file).read_bytes()


# Every kernel a certified graph runs, by op and gate, with its probe.
KERNELS: dict[str, Probe] = {
    "RNN tanh": Probe("tanh", "rnn-tanh.onnx", "X"),
    "GRU update gate sigmoid": Probe("sigmoid", "gru-update-sigmoid.onnx", "X", {"initial_h": 1.0}),
    "GRU reset gate sigmoid": Probe("sigmoid", "gru-reset-sigmoid.onnx", "X"),
    "GRU hidden gate tanh": Probe("tanh", "gru-hidden-tanh.onnx", "X"),
    "LSTM gate sigmoid": Probe("sigmoid", "lstm-gate-sigmoid.onnx", "X", {"initial_c": SPAN}),
    "LSTM cell tanh": Probe("tanh", "lstm-cell-tanh.onnx", "initial_c"),
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
        self._probe = KERNELS[kernel]
        self.function = self._probe.function
        model = self._probe.model()
        self._session = open_session(model)
        self._inputs = [i.name for i in read_model(model).graph.input]

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
        if KERNELS[kernel].function == function
    )


def measured_error(op: str, points: int = GRID) -> float:
    """The start-up check: the largest error of every tanh and sigmoid kernel that the
    recurrent op `op` (RNN, GRU or LSTM) runs, over a dense grid."""
    kernels = [kernel for kernel in KERNELS if kernel.split()[0] == op]
    if not kernels:
        raise ValueError(f"no probes for the op {op!r}; there are for RNN, GRU and LSTM")
    values = grid(points)
    return max(KernelProbe(kernel).max_error(values) for kernel in kernels)


def measured_tanh_error(points: int = GRID) -> float:
    """The largest tanh error of any recurrent op's kernel, over a grid."""
    return _largest("tanh", points)


def measured_sigmoid_error(points: int = GRID) -> float:
    """The largest sigmoid error of any recurrent op's kernel (GRU and LSTM), over a grid."""
    return _largest("sigmoid", points)
