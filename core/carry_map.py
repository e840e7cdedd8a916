"""A counter's recurrent map in float64 (F_d: a state and the digit d read -> the next state,
for an RNN, a GRU or an LSTM), its Jacobian, and the margins read from its states: the right
digit's logit over the best rival's, after the carry is spent (`spend_margin`) and on the digits
copied after it (`switch_margin`). Pure numpy on the weights (core.weights).
"""

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from core.weights import GruWeights, LstmWeights, RnnWeights, Weights

Array = npt.NDArray[np.float64]
StepFn = Callable[[Array, int], Array]  # states (N, S), digit -> next states (N, S)


def _sigmoid(x: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def step_function(weights: Weights) -> StepFn:
    """The cell's map in float64: a state batch and a digit -> the next states."""
    w = weights
    size = w.hidden_size
    shift = w.w_ih.T + (w.b_ih + w.b_hh)  # (10, G): input column plus both biases

    if isinstance(w, RnnWeights):

        def rnn(states: Array, digit: int) -> Array:
            next_states: Array = np.tanh(states @ w.w_hh.T + shift[digit])
            return next_states

        return rnn
    if isinstance(w, GruWeights):
        hidden = slice(2 * size, 3 * size)

        def gru(states: Array, digit: int) -> Array:
            pre = states @ w.w_hh[: 2 * size].T + shift[digit, : 2 * size]
            z, r = _sigmoid(pre[:, :size]), _sigmoid(pre[:, size:])
            linear = states @ w.w_hh[hidden].T + w.b_hh[hidden]
            n = np.tanh(w.w_ih[hidden, digit] + w.b_ih[hidden] + r * linear)
            return (1 - z) * n + z * states

        return gru
    if isinstance(w, LstmWeights):

        def lstm(states: Array, digit: int) -> Array:
            h, c = states[:, :size], states[:, size:]
            pre = h @ w.w_hh.T + shift[digit]
            i, o, f = (_sigmoid(pre[:, k * size : (k + 1) * size]) for k in range(3))
            g = np.tanh(pre[:, 3 * size :])
            c_new = f * c + i * g
            return np.concatenate([o * np.tanh(c_new), c_new], axis=1)

        return lstm
    raise TypeError(f"no step function for {type(w).__name__}")


def state_size(weights: Weights) -> int:
    return 2 * weights.hidden_size if isinstance(weights, LstmWeights) else weights.hidden_size


def logits(weights: Weights, states: Array) -> Array:
    """(N, S) -> (N, 10): the readout reads the first H entries (h)."""
    return states[:, : weights.hidden_size] @ weights.w_out.T + weights.b_out


Ints = npt.NDArray[np.int64]


def margins(weights: Weights, states: Array, right: Ints) -> tuple[Array, Ints]:
    """The right digit's logit minus the best rival's, and that rival, per state."""
    scores = logits(weights, states)
    rows = np.arange(states.shape[0])
    own = scores[rows, right]
    scores[rows, right] = -np.inf
    rival = scores.argmax(axis=1).astype(np.int64)
    return own - scores[rows, rival], rival


def jacobian(step: StepFn, state: Array, digit: int, eps: float = 1e-6) -> Array:
    """dF_digit/ds at one state (S,), by central differences: (S, S)."""
    size = state.shape[0]
    probes = np.concatenate([state + eps * np.eye(size), state - eps * np.eye(size)])
    images = step(probes, digit)
    return ((images[:size] - images[size:]) / (2 * eps)).T


def spend_margin(weights: Weights, step: StepFn, states: Array) -> tuple[Array, Ints]:
    """For carrying states (N, S): min over next digits d in 0-8 of the margin of d + 1 after
    reading d, and the digit d where it is least."""
    per_digit = np.stack(
        [margins(weights, step(states, d), np.full(states.shape[0], d + 1))[0] for d in range(9)]
    )  # (9, N)
    return per_digit.min(axis=0), per_digit.argmin(axis=0).astype(np.int64)


# Tail digits copied after the carry is spent, as the carry scan checks (TAIL_DIGITS there).
TAIL = 3
_CHUNK = 8  # carrying states per batch: 8 x 9 x 10^3 rows of the last tail level


def switch_margin(weights: Weights, step: StepFn, states: Array, tail: int = TAIL) -> Array:
    """For carrying states (N, S): the least margin of the copied digit over every d in 0-8
    read with the carry and every `tail` digits after it: once spent, the carry must be
    dropped and each next digit copied."""
    worst = np.full(states.shape[0], np.inf)
    for start in range(0, states.shape[0], _CHUNK):
        chunk = states[start : start + _CHUNK]
        origin = np.arange(chunk.shape[0])
        level = np.concatenate([step(chunk, d) for d in range(9)])  # (9n, S)
        origin = np.tile(origin, 9)
        for _ in range(tail):
            level = np.concatenate([step(level, t) for t in range(10)])
            origin = np.tile(origin, 10)
            digits = np.repeat(np.arange(10), level.shape[0] // 10)
            margin = margins(weights, level, digits)[0]
            least = np.full(chunk.shape[0], np.inf)
            np.minimum.at(least, origin, margin)
            worst[start : start + chunk.shape[0]] = np.minimum(
                worst[start : start + chunk.shape[0]], least
            )
    return worst
