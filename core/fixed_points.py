"""The fixed points of a counter's maps F_d (core.carry_map), found by Newton from many
starts, with their Jacobians' eigenvalues and what the network reads out there; and whether the
carry chain has settled on a stable fixed point of F_9 that carries.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.carry_map import (
    Array,
    StepFn,
    jacobian,
    logits,
    spend_margin,
    state_size,
    step_function,
    switch_margin,
)
from core.weights import Weights

# A fixed point is kept when F(s) is within this of s; two closer than MERGE are one.
FIXED_TOLERANCE = 1e-10
MERGE = 1e-6
# Starts for the fixed-point search: random states, reachable states and the chain's own.
RANDOM_STARTS = 200
SETTLE_STEPS = 300  # plain iteration first from every start: finds the stable points
NEWTON_STEPS = 60


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


def newton(step: StepFn, state: Array, digit: int) -> Array | None:
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
        point = newton(step, candidate, digit)
        if point is not None and all(np.max(np.abs(point - f)) > MERGE for f in found):
            found.append(point)
    points = [
        describe_point(
            weights, state, digit, int(np.sum(np.max(np.abs(settled - state), axis=1) < 1e-4))
        )
        for state in found
    ]
    return sorted(points, key=lambda p: (not p.stable, -p.basin_hits))


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
