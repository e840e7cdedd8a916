"""The certificate on a torch model, as training runs it between epochs.

The weights are read as float64 copies of the float32 parameters, which are exactly the values
the exported graph holds, so a proof here is the proof of the file export writes. Between
epochs only the unbounded proof matters (it decides when to stop), so the search for a finite
K stops early; the card's proof (training.export) searches to core.certify.DEFAULT_LIMIT.
"""

import numpy as np
import numpy.typing as npt

from core.carry_proof import CarryProof
from core.cells import Cell
from core.certificate import cell_of, prove_weights
from core.certify import DEFAULT_TANH_ERROR
from core.interval import Array
from core.weights import GruWeights, LstmWeights, RnnWeights, Weights
from training.model import Cell as CellName
from training.model import Counter

# Closures are tried at every run of up to 64 nines, then at powers of two: 256 covers them.
IN_LOOP_LIMIT = 256
# Where each of ONNX's gate blocks sits in PyTorch's parameters: the exporter reorders them.
# GRU: PyTorch r, z, n -> ONNX z, r, h. LSTM: PyTorch i, f, g, o -> ONNX i, o, f, c.
ONNX_GATE_ORDER = {"rnn": [0], "gru": [1, 0, 2], "lstm": [0, 3, 1, 2]}


def onnx_rows(cell: CellName, size: int) -> npt.NDArray[np.int64]:
    """Rows that put PyTorch's gate blocks in ONNX's order: onnx_weight = torch_weight[rows]
    (np.argsort(rows) goes back)."""
    return np.concatenate([np.arange(size) + block * size for block in ONNX_GATE_ORDER[cell]])


def _params(counter: Counter) -> dict[str, Array]:
    return {name: p.detach().double().numpy() for name, p in counter.state_dict().items()}


def rnn_weights(counter: Counter) -> RnnWeights:
    """The torch model's weights in the certifier's layout (float64)."""
    weights = model_weights(counter)
    if not isinstance(weights, RnnWeights):
        raise ValueError(f"expected an RNN, got a {counter.config.cell}")
    return weights


def model_weights(counter: Counter) -> Weights:
    """The torch model's weights in the certifier's layout (float64), gates in ONNX's order."""
    params, cell = _params(counter), counter.config.cell
    order = onnx_rows(cell, counter.config.hidden_size)
    kinds: dict[str, type[Weights]] = {"rnn": RnnWeights, "gru": GruWeights, "lstm": LstmWeights}
    kind = kinds[cell]
    return kind(
        w_ih=params["cell.weight_ih_l0"][order],
        w_hh=params["cell.weight_hh_l0"][order],
        b_ih=params["cell.bias_ih_l0"][order],
        b_hh=params["cell.bias_hh_l0"][order],
        w_out=params["readout.weight"],
        b_out=params["readout.bias"],
    )


def model_cell(counter: Counter, tanh_error: float = DEFAULT_TANH_ERROR) -> Cell | None:
    """The certificate's view of the model, or None for a cell it does not cover (relu RNN)."""
    return None if _uncovered(counter) else cell_of(model_weights(counter), tanh_error)


def prove_model(counter: Counter, limit: int = IN_LOOP_LIMIT) -> tuple[CarryProof, float] | None:
    """The proof of the model's reliable carry length and the activation allowance it holds
    under (core.certificate.prove_weights), or None when no certificate covers the cell."""
    return None if _uncovered(counter) else prove_weights(model_weights(counter), limit)


def _uncovered(counter: Counter) -> bool:
    """A cell no certificate covers: the relu RNN."""
    return counter.config.cell == "rnn" and counter.config.nonlinearity != "tanh"
