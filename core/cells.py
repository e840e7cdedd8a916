"""Recurrent cells as the certificate sees them: a box of states -> a box per next digit.

A `Cell` maps a batch of boxes of states (N, S) to the boxes that hold every next state, one
per digit read, (N, 10, S), including the deployed float32 rounding and activation error,
rounded outward (core.interval). Its `readout` says, for boxes and the digit that must win on
each, by how much the right digit's logit beats the others everywhere in the box.

The tanh RNN is here; gated cells add their own `image` over the same readout.
"""

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from core import interval
from core.interval import Array
from core.weights import RnnWeights

Ints = npt.NDArray[np.int64]

# Extra logit gap on top of the rounding bound so float32 exp/divide keep the argmax strict.
SOFTMAX_SLACK = 1e-4


@dataclass(frozen=True)
class Readout:
    """The readout over N boxes, each against the digit that must win on it."""

    slack: Array  # (N,): min over rivals of gap - rounding bound; the proof needs > 0
    gap: Array  # (N,): min over rivals of the logit gap's lower bound (the margin)
    rival: Ints  # (N,): the rival with the least slack


class Cell(Protocol):
    """What the certificate needs of a recurrent cell."""

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
