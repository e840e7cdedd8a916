"""Why a counter keeps or loses the carry: the dynamics of its recurrent map, in float64 numpy.

The model reads digits least significant first, so an input's trailing nines are read first,
from the zero state, with the carry on: the carry chain is one trajectory, s_0 = 0 and
s_{j+1} = F_9(s_j). At each s_j the carry must still be there: the digit just read (a nine)
must read out 0 (`output_margin`), whatever digit d in 0-8 comes next must read out d + 1
(`spend_margin`), and the digits after that must be copied, the carry dropped
(`switch_margin`, over every tail of TAIL digits, as the carry scan checks). The carry
margin is the least of the three: where it crosses zero the carry is lost.

Whether the chain can last for ever is a property of the map F_9: the carry lasts when F_9 has
a stable fixed point that reads out the carry (an attractor the chain falls into); without
one the chain is a transient that must drift out of the carry region. This module finds the
fixed points of F_9 and of the copying maps F_0..F_8 (Newton from many starts), their
Jacobians' eigenvalues, and where and why the chain leaves. Pure numpy on the weights the
ONNX file holds (core.weights), so it runs on exactly what the service serves.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.weights import GruWeights, LstmWeights, RnnWeights, Weights

Array = npt.NDArray[np.float64]
StepFn = Callable[[Array, int], Array]  # states (N, S), digit -> next states (N, S)

# A fixed point is kept when F(s) is within this of s; two closer than MERGE are one.
FIXED_TOLERANCE = 1e-10
MERGE = 1e-6
# Starts for the fixed-point search: random states, reachable states and the chain's own.
RANDOM_STARTS = 200
SETTLE_STEPS = 300  # plain iteration first from every start: finds the stable points
NEWTON_STEPS = 60
DEFAULT_STEPS = 1000  # the chain is followed as far as the carry scan looks


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


@dataclass(frozen=True)
class FixedPoint:
    """A state s with F_digit(s) = s, and what the network says there."""

    digit: int  # the map: the digit read
    state: Array
    eigenvalues: npt.NDArray[np.complex128]  # of the Jacobian, by modulus, largest first
    readout: int  # argmax of the logits at s
    output_margin: float  # readout's logit minus the best rival's
    spend_margin: float  # 9-map only: min over d in 0-8 of d + 1's margin after reading d
    switch_margin: float  # 9-map only: the least copied digit's margin after d then a tail
    basin_hits: int  # how many of the search's settled starts ended here

    @property
    def spectral_radius(self) -> float:
        return float(np.abs(self.eigenvalues[0]))

    @property
    def stable(self) -> bool:
        return self.spectral_radius < 1.0

    @property
    def carries(self) -> bool:
        """Reads out the carry: 0 for the nine just read, d + 1 for any next digit d, and
        then drops it (t for any digit t after that)."""
        return (
            self.readout == 0
            and self.output_margin > 0
            and self.spend_margin > 0
            and self.switch_margin > 0
        )


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


def _starts(weights: Weights, step: StepFn, extra: Array, rng: np.random.Generator) -> Array:
    size, hidden = state_size(weights), weights.hidden_size
    random = rng.uniform(-1, 1, (RANDOM_STARTS, size))
    if size > hidden:  # an LSTM's c is not bounded by 1; start it where h lives
        random[:, hidden:] *= 3
    reachable = np.zeros((RANDOM_STARTS, size))
    for _ in range(12):
        digits = rng.integers(0, 10, RANDOM_STARTS)
        reachable = np.concatenate([step(reachable[digits == d], d) for d in range(10)])
    return np.concatenate([random, reachable, extra])


def _newton(step: StepFn, state: Array, digit: int) -> Array | None:
    for _ in range(NEWTON_STEPS):
        residual = step(state[None], digit)[0] - state
        if np.max(np.abs(residual)) < FIXED_TOLERANCE:
            return state
        system = jacobian(step, state, digit) - np.eye(state.shape[0])
        try:
            move = np.linalg.lstsq(system, -residual, rcond=None)[0]
        except np.linalg.LinAlgError:
            return None
        scale = min(1.0, 0.5 / max(float(np.max(np.abs(move))), 1e-300))
        state = state + scale * move
        if not np.all(np.isfinite(state)) or np.max(np.abs(state)) > 1e3:
            return None
    residual = step(state[None], digit)[0] - state
    return state if np.max(np.abs(residual)) < FIXED_TOLERANCE else None


def fixed_points(
    weights: Weights, digit: int, extra: Array | None = None, *, saddles: bool = True
) -> list[FixedPoint]:
    """Every fixed point of F_digit the search finds, stable ones first (most basin hits);
    with saddles=False only those plain iteration settles on (the stable ones)."""
    step = step_function(weights)
    rng = np.random.default_rng(0)
    size = state_size(weights)
    starts = _starts(weights, step, np.zeros((0, size)) if extra is None else extra, rng)
    settled = starts
    for _ in range(SETTLE_STEPS):
        settled = step(settled, digit)
    # Newton from the settled points (stable ones, exactly) and from the raw starts (saddles).
    # Most settled starts land on the same few points: Newton once per distinct one.
    _, distinct = np.unique(np.round(settled, 4), axis=0, return_index=True)
    candidates = settled[distinct]
    if saddles:
        candidates = np.concatenate([candidates, starts[:: max(1, starts.shape[0] // 60)]])
    found: list[Array] = []
    for candidate in candidates:
        point = _newton(step, candidate, digit)
        if point is not None and all(np.max(np.abs(point - f)) > MERGE for f in found):
            found.append(point)
    points = [
        describe_point(
            weights, state, digit, int(np.sum(np.max(np.abs(settled - state), axis=1) < 1e-4))
        )
        for state in found
    ]
    return sorted(points, key=lambda p: (not p.stable, -p.basin_hits))


@dataclass(frozen=True)
class Chain:
    """The carry chain: states after j = 0..N nines read with the carry on."""

    states: Array  # (N + 1, S)
    output_margin: Array  # (N + 1,): 0's margin after reading the j-th nine (inf at j = 0)
    output_rival: npt.NDArray[np.int64]
    spend_margin: Array  # (N + 1,): min over d of d + 1's margin after j nines then d
    spend_digit: npt.NDArray[np.int64]  # the next digit d where that is least
    switch_margin: Array  # (N + 1,): least copied digit's margin after j nines, d, then a tail

    @property
    def margin(self) -> Array:
        """The carry margin: kept (output), spent (spend) and dropped (switch), the least."""
        return np.minimum(np.minimum(self.output_margin, self.spend_margin), self.switch_margin)

    @property
    def lost_at(self) -> int | None:
        """The first run of nines the carry does not survive (margin < 0), or None."""
        below = np.flatnonzero(self.margin < 0)
        return int(below[0]) if below.size else None


# Once a step moves the chain by less than this (max norm) it has settled: every later state
# is the same to within it, and so is every margin read from it.
SETTLED = 1e-13


def chain_states(weights: Weights, steps: int = DEFAULT_STEPS) -> tuple[Array, int]:
    """The states after j = 0..steps nines, (steps + 1, S), and the j from which they repeat."""
    step = step_function(weights)
    states = np.zeros((steps + 1, state_size(weights)))
    for j in range(steps):
        states[j + 1] = step(states[j : j + 1], 9)[0]
        if np.max(np.abs(states[j + 1] - states[j])) < SETTLED:
            states[j + 2 :] = states[j + 1]
            return states, j + 1
    return states, steps


def carry_chain(weights: Weights, steps: int = DEFAULT_STEPS) -> Chain:
    step = step_function(weights)
    states, settled = chain_states(weights, steps)
    # The margins of the states up to the settled one; later states repeat it.
    distinct = states[: settled + 1]
    out, rival = margins(weights, distinct, np.zeros(settled + 1, dtype=np.int64))
    out[0], rival[0] = np.inf, -1  # nothing read yet: no output to get right
    spend, digit = spend_margin(weights, step, distinct)
    switch = switch_margin(weights, step, distinct)
    rows = np.minimum(np.arange(steps + 1), settled)
    return Chain(states, out[rows], rival[rows], spend[rows], digit[rows], switch[rows])


@dataclass(frozen=True)
class Exit:
    """Where the chain leaves the carry, and why it drifts there."""

    step: int | None  # first j with margin < 0 (None: never within the chain)
    nearest: int  # index into the 9-map's fixed points nearest the chain at that step
    distance: float  # max-norm distance from the chain's state to it
    slowest_step: int  # where the chain moves least (a bottleneck: a ghost of a fixed point)
    slowest_speed: float  # |s_{j+1} - s_j| there (max norm)
    slow_eigenvalue: complex  # the Jacobian's eigenvalue of largest modulus at that state
    drift_alignment: float  # |cos| between the drift s_{j+1} - s_j and its eigenvector


def chain_exit(weights: Weights, chain: Chain, points: list[FixedPoint]) -> Exit:
    step = step_function(weights)
    lost = chain.lost_at
    end = chain.states.shape[0] - 1 if lost is None else lost
    index = min(end, chain.states.shape[0] - 1)
    distances = [float(np.max(np.abs(chain.states[index] - p.state))) for p in points]
    nearest = int(np.argmin(distances)) if points else -1
    moves = np.max(np.abs(np.diff(chain.states[: end + 1], axis=0)), axis=1)
    # The chain's first step jumps from 0 onto the carrying states; look for slowness after it.
    window = moves[1:] if moves.size > 1 else moves
    slowest = int(np.argmin(window)) + (1 if moves.size > 1 else 0)
    here = chain.states[slowest]
    eigen, vectors = np.linalg.eig(jacobian(step, here, 9))
    lead = int(np.argmax(np.abs(eigen)))
    drift = chain.states[slowest + 1] - here
    vector = np.real(vectors[:, lead])
    norm = np.linalg.norm(drift) * np.linalg.norm(vector)
    alignment = float(abs(drift @ vector) / norm) if norm > 0 else 0.0
    return Exit(
        step=lost,
        nearest=nearest,
        distance=distances[nearest] if points else float("nan"),
        slowest_step=slowest,
        slowest_speed=float(moves[slowest]),
        slow_eigenvalue=complex(eigen[lead]),
        drift_alignment=alignment,
    )


@dataclass(frozen=True)
class Dynamics:
    """Everything `python -m training explain` reports about one model."""

    chain: Chain
    nine_points: list[FixedPoint]
    copy_points: list[FixedPoint]  # stable points of F_0..F_8, one or more per digit
    exit: Exit

    @property
    def carry_attractor(self) -> bool:
        """A stable fixed point of F_9 reads out the carry and the chain settles on it."""
        return self.attractor is not None

    @property
    def attractor(self) -> FixedPoint | None:
        return settled_attractor(self.chain.states[-1], self.nine_points)

    @property
    def predicted_exact_run(self) -> int | None:
        """The longest run of nines the carry survives; None when it lasts for ever."""
        lost = self.chain.lost_at
        if lost is None and self.carry_attractor:
            return None
        return (self.chain.states.shape[0] - 1) if lost is None else lost - 1


def describe_point(weights: Weights, state: Array, digit: int, hits: int = 0) -> FixedPoint:
    """A fixed point's Jacobian spectrum and readout."""
    step = step_function(weights)
    eigen = np.linalg.eigvals(jacobian(step, state, digit)).astype(np.complex128)
    eigen = eigen[np.argsort(-np.abs(eigen))]
    scores = logits(weights, state[None])[0]
    readout = int(scores.argmax())
    margin = float(scores[readout] - np.max(np.delete(scores, readout)))
    spend = switch = np.nan
    if digit == 9:
        spend = float(spend_margin(weights, step, state[None])[0][0])
        switch = float(switch_margin(weights, step, state[None])[0])
    return FixedPoint(digit, state, eigen, readout, margin, spend, switch, hits)


def settled_attractor(end: Array, nine_points: list[FixedPoint]) -> FixedPoint | None:
    """The stable fixed point of F_9 that carries (reads 0, spends the carry on the next digit
    and drops it after) and that the chain, ending at `end`, has settled on; None if none."""
    for point in nine_points:
        if point.stable and point.carries and np.max(np.abs(end - point.state)) < 1e-3:
            return point
    return None


def carry_attractor(weights: Weights, steps: int = DEFAULT_STEPS) -> bool:
    """The service's re-derivation, without the search: follow the chain, polish its end with
    Newton and check that point is a stable fixed point of F_9 that carries."""
    states, _ = chain_states(weights, steps)
    point = _newton(step_function(weights), states[-1], 9)
    if point is None:
        return False
    return settled_attractor(states[-1], [describe_point(weights, point, 9)]) is not None


def analyse(weights: Weights, steps: int = DEFAULT_STEPS) -> Dynamics:
    chain = carry_chain(weights, steps)
    # The chain's own states seed the 9-map's search, so a slow transient's ghost is tried too.
    picks = chain.states[np.unique(np.geomspace(1, steps, 40).astype(int))]
    nine = fixed_points(weights, 9, extra=picks)
    copies = [p for d in range(9) for p in fixed_points(weights, d, saddles=False) if p.stable]
    return Dynamics(chain, nine, copies, chain_exit(weights, chain, nine))
