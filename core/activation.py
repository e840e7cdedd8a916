"""The error of the tanh that onnxruntime's RNN op computes, measured on the onnxruntime here.

The certificate allows each deployed tanh an absolute error (core.certify.DEFAULT_TANH_ERROR);
that allowance is only sound if the onnxruntime that runs the model stays within it. This
measures it through the same op the exported model uses: an RNN with identity input weights
and no recurrence, so every output is tanh of one input value, computed by the RNN kernel's
own activation. The service measures a dense grid at start; bench/tanh_error.py runs every
float32 value.
"""

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper

from core.session import open_session

WIDTH = 16  # values per time step: the hidden size of the shipped models
SPAN = 20.0  # beyond |x| = 20, float32 tanh is +-1 exactly
GRID = 1 << 20  # points of the start-up check


def _probe() -> onnx.ModelProto:
    """RNN(X) with W = identity, R = 0, no bias: Y = tanh(X), elementwise, in the RNN kernel."""
    identity = np.eye(WIDTH, dtype=np.float32)[None]  # (1, H, H)
    graph = helper.make_graph(
        [helper.make_node("RNN", ["X", "W", "R"], ["Y"], hidden_size=WIDTH)],
        "tanh_probe",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["time", "batch", WIDTH])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [
            helper.make_tensor("W", TensorProto.FLOAT, identity.shape, identity.ravel()),
            helper.make_tensor("R", TensorProto.FLOAT, identity.shape, np.zeros_like(identity)),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


class TanhProbe:
    """An onnxruntime session that computes the RNN kernel's tanh of any float32 values."""

    def __init__(self) -> None:
        self._session = open_session(_probe().SerializeToString())

    def tanh(self, values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """onnxruntime's tanh of each value (any shape)."""
        flat = np.ascontiguousarray(values, dtype=np.float32).ravel()
        padded = np.zeros(-(-flat.size // WIDTH) * WIDTH, dtype=np.float32)
        padded[: flat.size] = flat
        (out,) = self._session.run(None, {"X": padded.reshape(1, -1, WIDTH)})
        result: npt.NDArray[np.float32] = np.asarray(out).ravel()[: flat.size]
        return result.reshape(np.shape(values))

    def max_error(self, values: npt.NDArray[np.float32]) -> float:
        """The largest |ort tanh(x) - tanh(x)| over the values, tanh(x) in float64."""
        exact = np.tanh(np.asarray(values, dtype=np.float64))
        return float(np.abs(self.tanh(values).astype(np.float64) - exact).max())


def grid(points: int = GRID) -> npt.NDArray[np.float32]:
    """A dense grid over [-SPAN, SPAN], plus the float32 values around 0 (tiny inputs)."""
    tiny = np.float32(2.0) ** -np.arange(1, 127, dtype=np.float32)
    return np.concatenate([np.linspace(-SPAN, SPAN, points, dtype=np.float32), tiny, -tiny]).astype(
        np.float32
    )


def measured_tanh_error(points: int = GRID) -> float:
    """The start-up check: the largest tanh error over a dense grid."""
    return TanhProbe().max_error(grid(points))
