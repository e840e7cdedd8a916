"""The certificate on a torch model, as training runs it between epochs.

The weights are read as float64 copies of the float32 parameters, which are exactly the values
the exported graph holds, so a proof here is the proof of the file export writes. Between
epochs only the unbounded proof matters (it decides when to stop), so the search for a finite
K stops early; the card's proof (training.export) searches to core.certify.DEFAULT_LIMIT.
"""

from core.cells import Cell, RnnCell
from core.certify import DEFAULT_TANH_ERROR, CarryProof, prove_carry
from core.weights import RnnWeights
from training.model import Counter

# Closures are tried at every run of up to 64 nines, then at powers of two: 256 covers them.
IN_LOOP_LIMIT = 256


def rnn_weights(counter: Counter) -> RnnWeights:
    """The torch model's weights in the certifier's layout (float64)."""
    params = {name: p.detach().double().numpy() for name, p in counter.state_dict().items()}
    return RnnWeights(
        w_ih=params["cell.weight_ih_l0"],
        w_hh=params["cell.weight_hh_l0"],
        b_ih=params["cell.bias_ih_l0"],
        b_hh=params["cell.bias_hh_l0"],
        w_out=params["readout.weight"],
        b_out=params["readout.bias"],
    )


def model_cell(counter: Counter, tanh_error: float = DEFAULT_TANH_ERROR) -> Cell | None:
    """The certificate's view of the model, or None for a cell it does not cover."""
    config = counter.config
    if config.cell == "rnn" and config.nonlinearity == "tanh":
        return RnnCell(rnn_weights(counter), tanh_error)
    return None


def prove_model(counter: Counter, limit: int = IN_LOOP_LIMIT) -> CarryProof | None:
    """The proof of the model's reliable carry length, or None when no certificate covers it."""
    cell = model_cell(counter)
    return None if cell is None else prove_carry(cell, limit)
