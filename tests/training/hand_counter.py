"""A tanh RNN built by hand that adds one exactly: test fixture for the scan and the certificate.

21 saturated units (+1 true, -1 false), gain G on every pre-activation:

- unit 0, n: "no carry out of this step" = x != 9 or no carry came in.
  pre = G (2 [x != 9] + n_prev - 0.5); h0 = 0 reads as "carry in", as adding one needs.
- units 1-10, a_o: "read o, no carry in":  pre = G (2 [x = o] + n_prev - 2.5)
- units 11-20, b_o: "read o, carry in":     pre = G (2 [x = o] - n_prev - 1.5)

Exactly one of the 20 a/b units is on; the output digit is o for a_o and o + 1 for b_o, so
logit_r = A (a_r + b_(r-1) + 1): the right digit scores A, every other -A.
"""

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from torch import nn

from core.codec import decode, encode_batch
from core.weights import GruWeights, LstmWeights, RnnWeights, Weights
from training.onnx_graph import counter_from_weights, export_module
from training.onnx_graph import export_onnx as training_export_onnx

CARRY = 0  # index of the n unit


def _a(o: int) -> int:
    return 1 + o


def _b(o: int) -> int:
    return 11 + o


def hand_counter(gain: float = 20.0, readout: float = 5.0) -> RnnWeights:
    """The exact counter above."""
    size = 21
    w_ih, w_hh, bias = np.zeros((size, 10)), np.zeros((size, size)), np.zeros(size)
    w_ih[CARRY, :9] = 2 * gain
    w_hh[CARRY, CARRY] = gain
    bias[CARRY] = -0.5 * gain
    for o in range(10):
        w_ih[_a(o), o], w_hh[_a(o), CARRY], bias[_a(o)] = 2 * gain, gain, -2.5 * gain
        w_ih[_b(o), o], w_hh[_b(o), CARRY], bias[_b(o)] = 2 * gain, -gain, -1.5 * gain
    w_out = np.zeros((10, size))
    for r in range(10):
        w_out[r, _a(r)] = readout
        w_out[r, _b((r - 1) % 10)] = readout
    return RnnWeights(
        w_ih=w_ih,
        w_hh=w_hh,
        b_ih=bias,
        b_hh=np.zeros(size),
        w_out=w_out,
        b_out=np.full(10, readout),
    )


def with_carry_self_weight(value: float) -> RnnWeights:
    """The exact counter with its carry unit's self-connection set to value (damaged unless G).

    -G flips the carry; 0 forgets it, so every 9 carries even with no carry in: 90 + 1 -> 191.
    """
    weights = hand_counter()
    w_hh = weights.w_hh.copy()
    w_hh[CARRY, CARRY] = value
    return replace(weights, w_hh=w_hh)


def _grow(matrix: npt.NDArray[np.float64], shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
    """matrix in the top-left corner of zeros of `shape`: room for units added by hand."""
    out = np.zeros(shape)
    out[tuple(slice(0, n) for n in matrix.shape)] = matrix
    return out


def leaky_counter(leak: float = 0.01, threshold: float = 0.15) -> RnnWeights:
    """The counter plus two units that break it after a long enough run of nines.

    Unit 21, L: pre = L_prev + leak on a 9, -5 on any other digit: it creeps up while nines
    are read. Unit 22, P: pre = G (L_prev - threshold) - 2 G (n_prev + 1), on once L has crept
    past threshold while a carry is still coming in (n_prev = -1; copying a run of nines
    leaves it off). P adds 2A to digit 1's logit, so from then on the network answers 1 where
    0 is right: right on short runs of trailing nines, wrong on long ones, like a model that
    never saw long runs; every other input is right.
    """
    exact = hand_counter()
    gain, readout = exact.w_hh[CARRY, CARRY], exact.b_out[0]
    size = exact.hidden_size + 2
    leak_unit, switch = size - 2, size - 1

    w_ih, w_hh = _grow(exact.w_ih, (size, 10)), _grow(exact.w_hh, (size, size))
    b_ih, w_out, b_out = (
        _grow(exact.b_ih, (size,)),
        _grow(exact.w_out, (10, size)),
        exact.b_out.copy(),
    )
    w_ih[leak_unit, :9], w_ih[leak_unit, 9] = -5.0, leak
    w_hh[leak_unit, leak_unit] = 1.0
    w_hh[switch, leak_unit], b_ih[switch] = gain, -gain * threshold - 2 * gain
    w_hh[switch, CARRY] = -2 * gain
    w_out[1, switch] = 2 * readout
    b_out[1] += 2 * readout
    return RnnWeights(
        w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=np.zeros(size), w_out=w_out, b_out=b_out
    )


def windowed_counter(low: float = 0.1, high: float = 0.2, leak: float = 0.01) -> RnnWeights:
    """The exact counter, wrong only where a carry ends after a run of nines in a middle window:
    right for short runs, wrong for some, right again for long ones (non-monotone in k).

    L creeps up while nines are read (as in leaky_counter); P1 and P2 switch on once L passes
    low and high, while a carry is coming in; S is on at the digit that ends the carry when
    P1 is on and P2 is not, and moves that digit's answer to 1.
    """
    exact = hand_counter()
    gain, sharp, readout = exact.w_hh[CARRY, CARRY], 500.0, exact.b_out[0]
    size = exact.hidden_size + 4
    leak_unit, early, late, spoil = range(exact.hidden_size, size)

    w_ih, w_hh = _grow(exact.w_ih, (size, 10)), _grow(exact.w_hh, (size, size))
    b_ih, w_out = _grow(exact.b_ih, (size,)), _grow(exact.w_out, (10, size))
    b_out = exact.b_out.copy()
    w_ih[leak_unit, :9], w_ih[leak_unit, 9] = -5.0, leak
    w_hh[leak_unit, leak_unit] = 1.0
    for switch, threshold in ((early, low), (late, high)):
        w_hh[switch, leak_unit], b_ih[switch] = sharp, -sharp * threshold - 2 * sharp
        w_hh[switch, CARRY] = -2 * sharp  # off unless a carry is coming in (n_prev = -1)
    # S: pre = G (P1 - P2 + 2 [x != 9] - 3): on only in the window, at a digit other than 9.
    w_hh[spoil, early], w_hh[spoil, late] = gain, -gain
    w_ih[spoil, :9], b_ih[spoil] = 2 * gain, -3 * gain
    w_out[1, spoil], b_out[1] = 2 * readout, b_out[1] + 2 * readout
    return RnnWeights(
        w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=np.zeros(size), w_out=w_out, b_out=b_out
    )


def copy_slip_counter() -> RnnWeights:
    """The exact counter, wrong where a 4 is read right after three 3s: it answers 7 there
    (4333 + 1 -> 7334), with no nine anywhere: a copying error, not a carry's, and one no
    number of three digits or fewer shows.

    Each unit needs the carry spent (n_prev = 1; 0 at the start, so nothing fires on the
    first digit): E1 = a 3 after a 3, pre = G (2 [x = 3] + a_3 + b_3 + n_prev - 2.5)
    (a_3 + b_3 is 0 after a 3, else -2); E2 = a 3 after E1, pre = G (2 [x = 3] + E1 + n_prev
    - 2.5); D = a 4 after E2, likewise. D adds 4A to digit 7's logit when on.
    """
    exact = hand_counter()
    gain, readout = exact.w_hh[CARRY, CARRY], exact.b_out[0]
    size = exact.hidden_size + 3
    first, second, slip = range(exact.hidden_size, size)

    w_ih, w_hh = _grow(exact.w_ih, (size, 10)), _grow(exact.w_hh, (size, size))
    b_ih, w_out = _grow(exact.b_ih, (size,)), _grow(exact.w_out, (10, size))
    b_out = exact.b_out.copy()
    for unit, digit in ((first, 3), (second, 3), (slip, 4)):
        w_ih[unit, digit], b_ih[unit], w_hh[unit, CARRY] = 2 * gain, -2.5 * gain, gain
    w_hh[first, _a(3)], w_hh[first, _b(3)] = gain, gain
    w_hh[second, first], w_hh[slip, second] = gain, gain
    w_out[7, slip], b_out[7] = 2 * readout, b_out[7] + 2 * readout
    return RnnWeights(
        w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=np.zeros(size), w_out=w_out, b_out=b_out
    )


def run(
    weights: RnnWeights, digits: npt.NDArray[np.int64], state: npt.NDArray[np.float64] | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Plain float64 forward pass: digits (N, T) -> output digits (N, T), states (N, T, H)."""
    count, steps = digits.shape
    h = np.zeros((count, weights.hidden_size)) if state is None else state
    outputs = np.zeros((count, steps), dtype=np.int64)
    states = np.zeros((count, steps, weights.hidden_size))
    for t in range(steps):
        pre = weights.w_ih.T[digits[:, t]] + h @ weights.w_hh.T + weights.b_ih + weights.b_hh
        h = np.tanh(pre)  # (N, H)
        outputs[:, t] = (h @ weights.w_out.T + weights.b_out).argmax(axis=1)
        states[:, t] = h
    return outputs, states


def add_one_by_network(weights: RnnWeights, numbers: list[str]) -> list[str]:
    """What the network answers for each number, as canonical decimals."""
    outputs, _ = run(weights, encode_batch(numbers))
    return [decode(row[: len(n) + 1]) for row, n in zip(outputs, numbers, strict=True)]


def answer_of(weights: RnnWeights) -> Callable[[str], str]:
    """What a decision asks of the served graph (one number -> its answer), by the network."""
    return lambda number: add_one_by_network(weights, [number])[0]


class NumpyCarryEngine:
    """CarryEngine over the float64 forward pass: the scan's core without onnxruntime."""

    name = "numpy float64"

    def __init__(self, weights: RnnWeights) -> None:
        self.weights = weights

    def initial_state(self) -> npt.NDArray[Any]:
        return np.zeros((1, self.weights.hidden_size))

    def run_nines(self, k: int) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
        outputs, states = run(self.weights, np.full((1, k), 9, dtype=np.int64))
        return states[0], outputs[0]

    def step(
        self, states: npt.NDArray[Any], digits: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
        outputs, after = run(self.weights, digits[:, None], state=states)
        return outputs[:, 0], after[:, 0]


def export_onnx(module: nn.Module, path: str) -> None:
    """Modules a Counter cannot express (e.g. two layers), through training's own export."""
    export_module(module, Path(path))


def export_weights(weights: Weights, path: str) -> None:
    """The hand-built weights exported as training exports a model (float32, like a trained one)."""
    training_export_onnx(counter_from_weights(weights), Path(path))


# Gates far into saturation: every sigmoid kernel returns exactly 0 or 1 beyond +-18.
SHUT = 30.0


def hand_gru(rnn: RnnWeights | None = None) -> GruWeights:
    """A GRU that runs an RNN counter (hand_counter() by default): the update gate shut
    (z = 0: h' = n), the reset gate open (r = 1), so n = tanh(W x + b + R h) is the RNN's step.
    Gate blocks in ONNX's order z, r, h."""
    rnn = hand_counter() if rnn is None else rnn
    size = rnn.hidden_size
    empty_in, empty_hh, zero = np.zeros((size, 10)), np.zeros((size, size)), np.zeros(size)
    return GruWeights(
        w_ih=np.concatenate([empty_in, empty_in, rnn.w_ih]),
        w_hh=np.concatenate([empty_hh, empty_hh, rnn.w_hh]),
        b_ih=np.concatenate([np.full(size, -SHUT), np.full(size, SHUT), rnn.b_ih]),
        b_hh=np.concatenate([zero, zero, rnn.b_hh]),
        w_out=rnn.w_out,
        b_out=rnn.b_out,
    )


def hand_lstm(rnn: RnnWeights | None = None) -> LstmWeights:
    """An LSTM that runs an RNN counter (hand_counter() by default): input and output gates
    open, forget gate shut, so c' = g = tanh(W x + b + R h / tanh(1)) and h' = tanh(c'): the
    saturated units read +-tanh(1) where the RNN's read +-1, hence the rescaled R and readout.
    Gate blocks in ONNX's order i, o, f, c."""
    rnn = hand_counter() if rnn is None else rnn
    size, scale = rnn.hidden_size, 1 / np.tanh(1.0)
    empty_in, empty_hh, zero = np.zeros((size, 10)), np.zeros((size, size)), np.zeros(size)
    on, off = np.full(size, SHUT), np.full(size, -SHUT)
    return LstmWeights(
        w_ih=np.concatenate([empty_in, empty_in, empty_in, rnn.w_ih]),
        w_hh=np.concatenate([empty_hh, empty_hh, empty_hh, rnn.w_hh * scale]),
        b_ih=np.concatenate([on, on, off, rnn.b_ih]),
        b_hh=np.concatenate([zero, zero, zero, rnn.b_hh]),
        w_out=rnn.w_out * scale,
        b_out=rnn.b_out,
    )
