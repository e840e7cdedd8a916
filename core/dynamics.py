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
one the chain is a transient that must drift out of the carry region. This module follows
the chain, finds the fixed points of F_9 and of the copying maps F_0..F_8 (core.fixed_points:
Newton from many starts, their Jacobians' eigenvalues), and where and why the chain leaves.
Pure numpy on the weights the ONNX file holds (core.weights, run as core.carry_map), so it runs
on exactly what the service serves.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.carry_map import (
    Array,
    jacobian,
    margins,
    spend_margin,
    state_size,
    step_function,
    switch_margin,
)
from core.fixed_points import (
    FixedPoint,
    describe_point,
    fixed_points,
    newton,
    settled_attractor,
)
from core.weights import Weights

DEFAULT_STEPS = 1000  # the chain is followed as far as the carry scan looks


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


def carry_attractor(weights: Weights, steps: int = DEFAULT_STEPS) -> bool:
    """The service's re-derivation, without the search: follow the chain, polish its end with
    Newton and check that point is a stable fixed point of F_9 that carries."""
    states, _ = chain_states(weights, steps)
    point = newton(step_function(weights), states[-1], 9)
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
