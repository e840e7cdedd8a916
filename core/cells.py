"""Recurrent cells as the certificate sees them: a box of states -> a box per next digit.

A `Cell` maps a batch of boxes of states (N, S) to the boxes that hold every next state, one
per digit read, (N, 10, S), including the deployed float32 rounding and activation error,
rounded outward (core.interval). Its `readout` says, for boxes and the digit that must win on
each, by how much the right digit's logit beats the others everywhere in the box.

The tanh RNN, the GRU and the LSTM are here, each with the arithmetic of the onnxruntime op
the exported graph runs (order of the sums, which products are rounded) and one activation
allowance on every tanh and sigmoid; all share the same readout. A cell may also say how
wide a box of each unit may grow before the proof gives up on it (`escape_width`, (S,);
core.certify.MAX_WIDTH otherwise).
"""

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from core import interval
from core.interval import Array
from core.weights import GruWeights, LstmWeights, RnnWeights, Weights

Ints = npt.NDArray[np.int64]

# Extra logit gap on top of the rounding bound so float32 exp/divide keep the argmax strict.
SOFTMAX_SLACK = 1e-4
# The widest box of an LSTM's cell-state unit the certificate goes on with (see LstmCell).
C_ESCAPE = 20.0


@dataclass(frozen=True)
class Readout:
    """The readout over N boxes, each against the digit that must win on it."""

    slack: Array  # (N,): min over rivals of gap - rounding bound; the proof needs > 0
    gap: Array  # (N,): min over rivals of the logit gap's lower bound (the margin)
    rival: Ints  # (N,): the rival with the least slack


class Cell(Protocol):
    """What the certificate needs of a recurrent cell."""

    @property
    def weights(self) -> Weights:
        """The weights the cell computes with."""
        ...

    @property
    def state_size(self) -> int:
        """S: the width of a state (H for RNN and GRU; h and c side by side for an LSTM)."""
        ...

    @property
    def activation_error(self) -> float:
        """The absolute error of the deployed tanh (and sigmoid) the images allow for."""
        ...

    def initial(self) -> Array:
        """The state before any digit is read, (S,): zeros."""
        ...

    def image(self, lo: Array, hi: Array) -> tuple[Array, Array]:
        """Boxes (N, S) -> the boxes holding the next state after each digit, (N, 10, S)."""
        ...

    def readout(self, lo: Array, hi: Array, right: Ints) -> Readout:
        """For boxes (N, S), how surely digit right[n] wins everywhere in box n."""
        ...


@dataclass(frozen=True)
class LinearReadout:
    """logits = w_out h + b_out on the first H entries of the state, as float32 computes it."""

    w_out: Array  # (10, H)
    b_out: Array  # (10,)

    def check(self, lo: Array, hi: Array, right: Ints) -> Readout:
        size = self.w_out.shape[1]
        lo, hi = lo[:, :size], hi[:, :size]  # (N, H)
        centre, radius = interval.centre_radius(lo, hi)
        diff = self.w_out[right][:, None, :] - self.w_out[None]  # (N, 10, H), exact in float64
        bias = self.b_out[right][:, None] - self.b_out[None]  # (N, 10)
        gap = np.einsum("nkh,nh->nk", diff, centre) - np.einsum("nkh,nh->nk", np.abs(diff), radius)
        own = np.einsum("nkh,nh->nk", np.abs(diff), np.abs(centre) + radius) + np.abs(bias)
        gap = interval.down(gap + bias - 2 * interval.gamma64(size + 3) * own)
        # float32 rounding of both logits: gamma(H + 1) * (|w_out| |h| + |b_out|) each
        logit_error = interval.gamma32(size + 1) * (
            interval.magnitude(lo, hi) @ np.abs(self.w_out).T + np.abs(self.b_out)
        )  # (N, 10)
        logit_error = interval.upper(logit_error, size + 1)
        rows = np.arange(lo.shape[0])
        bound = logit_error + logit_error[rows, right][:, None] + SOFTMAX_SLACK  # (N, 10)
        slack = gap - bound
        slack[rows, right] = np.inf
        gap[rows, right] = np.inf
        rival = slack.argmin(axis=1)
        return Readout(slack=slack[rows, rival], gap=gap.min(axis=1), rival=rival)


class RnnCell:
    """h' = tanh(w_ih[:, d] + b_ih + w_hh h + b_hh), read out linearly."""

    def __init__(self, weights: RnnWeights, tanh_error: float) -> None:
        self.weights = weights
        self.activation_error = tanh_error
        self._readout = LinearReadout(weights.w_out, weights.b_out)
        w = weights
        self._shift = w.w_ih.T + (w.b_ih + w.b_hh)  # (10, H), added in float64: outward below
        self._shift_size = np.abs(w.w_ih.T) + np.abs(w.b_ih) + np.abs(w.b_hh)

    @property
    def state_size(self) -> int:
        return self.weights.hidden_size

    def initial(self) -> Array:
        return np.zeros(self.state_size)

    def image(self, lo: Array, hi: Array) -> tuple[Array, Array]:
        size = self.state_size
        pre_lo, pre_hi, _ = interval.affine(
            self.weights.w_hh,
            lo[:, None, :],
            hi[:, None, :],
            self._shift,
            self._shift_size,
            sum_terms=size + 3,
        )  # (N, 10, H)
        # The shift's own float64 sum (w_ih + b_ih + b_hh) is one more rounding per term.
        spare = 3 * interval.U64 * self._shift_size
        return interval.tanh(
            interval.down(pre_lo - spare), interval.up(pre_hi + spare), self.activation_error
        )

    def readout(self, lo: Array, hi: Array, right: Ints) -> Readout:
        return self._readout.check(lo, hi, right)


def _gate_affine(
    w_ih: Array, w_hh: Array, b_ih: Array, b_hh: Array, lo: Array, hi: Array
) -> tuple[Array, Array]:
    """Bounds of the gates' pre-activations w_ih[:, d] + b_ih + w_hh h + b_hh over boxes of h
    (N, H), for every digit d: (N, 10, G), as float32 computes them, outward.

    onnxruntime adds the two biases first, then the input column (a product with a one-hot,
    exact) and the H recurrent products in some order: H + 3 terms in all.
    """
    size = w_hh.shape[1]
    shift = w_ih.T + (b_ih + b_hh)  # (10, G), added in float64: outward below
    shift_size = np.abs(w_ih.T) + np.abs(b_ih) + np.abs(b_hh)
    pre_lo, pre_hi, _ = interval.affine(
        w_hh, lo[:, None, :], hi[:, None, :], shift, shift_size, sum_terms=size + 3
    )
    # The shift's own float64 sum (w_ih + b_ih + b_hh) is one more rounding per term.
    spare = 3 * interval.U64 * shift_size
    return interval.down(pre_lo - spare), interval.up(pre_hi + spare)


class GruCell:
    """The GRU of ONNX's GRU op as PyTorch exports it (linear_before_reset = 1, gates z, r, h):

    z = sigmoid(W_z x + R_z h + b_z), r likewise, n = tanh(W_h x + b_Wh + r * (R_h h + b_Rh)),
    h' = (1 - z) * n + z * h, in onnxruntime's order of operations.
    """

    def __init__(self, weights: GruWeights, activation_error: float) -> None:
        self.weights = weights
        self.activation_error = activation_error
        self._readout = LinearReadout(weights.w_out, weights.b_out)

    @property
    def state_size(self) -> int:
        return self.weights.hidden_size

    def initial(self) -> Array:
        return np.zeros(self.state_size)

    def image(self, lo: Array, hi: Array) -> tuple[Array, Array]:
        w, size, error = self.weights, self.state_size, self.activation_error
        gates = slice(0, 2 * size)  # z and r
        pre_lo, pre_hi = _gate_affine(
            w.w_ih[gates], w.w_hh[gates], w.b_ih[gates], w.b_hh[gates], lo, hi
        )  # (N, 10, 2H)
        z_lo, z_hi = interval.sigmoid(pre_lo[..., :size], pre_hi[..., :size], error)
        r_lo, r_hi = interval.sigmoid(pre_lo[..., size:], pre_hi[..., size:], error)
        hidden = slice(2 * size, 3 * size)
        b_rh = w.b_hh[hidden]
        # R_h h + b_Rh: one float32 sum of H + 1 terms, the same for every digit: (N, H)
        linear_lo, linear_hi, _ = interval.affine(
            w.w_hh[hidden], lo, hi, b_rh, np.abs(b_rh), sum_terms=size + 1
        )
        reset_lo, reset_hi = interval.product(
            r_lo, r_hi, linear_lo[:, None], linear_hi[:, None]
        )  # (N, 10, H)
        # onnxruntime adds r * (...) to the input column, then the bias b_Wh
        column = np.broadcast_to(w.w_ih[hidden].T, reset_lo.shape)  # (N, 10, H)
        pre_lo, pre_hi = interval.add(column, column, reset_lo, reset_hi)
        b_wh = np.broadcast_to(w.b_ih[hidden], pre_lo.shape)
        pre_lo, pre_hi = interval.add(pre_lo, pre_hi, b_wh, b_wh)
        n_lo, n_hi = interval.tanh(pre_lo, pre_hi, error)
        return interval.mix(z_lo, z_hi, n_lo, n_hi, lo[:, None], hi[:, None])

    def readout(self, lo: Array, hi: Array, right: Ints) -> Readout:
        return self._readout.check(lo, hi, right)


class LstmCell:
    """The LSTM of ONNX's LSTM op as PyTorch exports it (gates i, o, f, c): the state is h and
    c side by side, (2H,); the readout reads h.

    i, o, f = sigmoid(W x + R h + b), g = tanh(W_c x + R_c h + b_c), c' = f * c + i * g,
    h' = o * tanh(c'), in onnxruntime's order of operations.
    """

    def __init__(self, weights: LstmWeights, activation_error: float) -> None:
        self.weights = weights
        self.activation_error = activation_error
        self._readout = LinearReadout(weights.w_out, weights.b_out)
        size = weights.hidden_size
        # h is within tanh's range; c is not bounded, and only tanh(c) is read, which is flat
        # (within 4e-9 of +-1) beyond |c| = 10: a c box wider than that still tells something.
        self.escape_width = np.concatenate([np.full(size, 2.0), np.full(size, C_ESCAPE)])

    @property
    def state_size(self) -> int:
        return 2 * self.weights.hidden_size

    def initial(self) -> Array:
        return np.zeros(self.state_size)

    def image(self, lo: Array, hi: Array) -> tuple[Array, Array]:
        w, size, error = self.weights, self.weights.hidden_size, self.activation_error
        pre_lo, pre_hi = _gate_affine(
            w.w_ih, w.w_hh, w.b_ih, w.b_hh, lo[:, :size], hi[:, :size]
        )  # (N, 10, 4H): i, o, f, c

        def gate(index: int) -> tuple[Array, Array]:
            block = slice(index * size, (index + 1) * size)
            return pre_lo[..., block], pre_hi[..., block]

        i_lo, i_hi = interval.sigmoid(*gate(0), error)
        o_lo, o_hi = interval.sigmoid(*gate(1), error)
        f_lo, f_hi = interval.sigmoid(*gate(2), error)
        g_lo, g_hi = interval.tanh(*gate(3), error)
        c_lo, c_hi = lo[:, None, size:], hi[:, None, size:]  # (N, 1, H)
        kept_lo, kept_hi = interval.product(c_lo, c_hi, f_lo, f_hi)  # c * f
        new_lo, new_hi = interval.product(i_lo, i_hi, g_lo, g_hi)
        cell_lo, cell_hi = interval.add(kept_lo, kept_hi, new_lo, new_hi)  # (N, 10, H)
        squashed_lo, squashed_hi = interval.tanh(cell_lo, cell_hi, error)
        h_lo, h_hi = interval.product(squashed_lo, squashed_hi, o_lo, o_hi)
        return np.concatenate([h_lo, cell_lo], axis=-1), np.concatenate([h_hi, cell_hi], axis=-1)

    def readout(self, lo: Array, hi: Array, right: Ints) -> Readout:
        return self._readout.check(lo, hi, right)
