"""A search for a number with no trailing nine that the served model answers wrong.

A proof of any K >= 0 covers every such number: its carry is spent at the first digit and
every later digit must be copied, at any length. Random numbers miss the few histories that
steer a weak network's state to where it misreads; a beam search steers there on purpose.
From the states after one digit d in 0-8 (read with the carry: d + 1 is right), each round
reads every digit after each kept state (right: the digit itself) and keeps the states whose
margin was least, half of the beam, and a random half, so that the beam does not collapse onto
one history. The map is the float64 one (core.carry_map); a number whose float64 margin falls
below zero is a candidate only: it is what the served graph (`answer`) gives that refutes.
"""

from collections.abc import Callable
from time import perf_counter

import numpy as np

from core.carry_map import Array, Ints, margins, state_size, step_function
from core.codec import add_one
from core.weights import Weights

WIDTH = 2000  # states kept a round
DEPTH = 60  # digits read after the first
SECONDS = 10.0
CANDIDATES = 8  # float64 failures tried on the served graph, a round


def copying_failure(
    weights: Weights,
    answer: Callable[[str], str],
    width: int = WIDTH,
    depth: int = DEPTH,
    seconds: float = SECONDS,
) -> tuple[str, str] | None:
    """A number with no trailing nine and what `answer` gives for it + 1, when that is
    wrong; None when the search found none within its depth or time."""
    start = perf_counter()
    rng = np.random.default_rng(0)  # the same search every run
    step = step_function(weights)
    zero = np.zeros((1, state_size(weights)))
    states = np.concatenate([step(zero, d) for d in range(9)])
    read = np.arange(9).reshape(9, 1)  # (B, t): the digits read, least significant first
    margin, _ = margins(weights, states, read[:, 0] + 1)
    found = _confirmed(answer, margin, np.argsort(margin), read)
    for _ in range(depth):
        if found is not None or perf_counter() - start > seconds:
            break
        count = states.shape[0]
        states = np.concatenate([step(states, d) for d in range(10)])  # digit-major
        digits = np.repeat(np.arange(10), count)
        read = np.concatenate([np.tile(read, (10, 1)), digits[:, None]], axis=1)
        margin, _ = margins(weights, states, digits)
        order = np.argsort(margin)
        found = _confirmed(answer, margin, order, read)
        kept = np.unique(
            np.concatenate(
                [order[: width // 2], rng.choice(len(order), min(width // 2, len(order)), False)]
            )
        )
        states, read = states[kept], read[kept]
    return found


def _confirmed(
    answer: Callable[[str], str], margin: Array, order: Ints, read: Ints
) -> tuple[str, str] | None:
    """The first float64 candidate (in `order`: least margin first) that the served graph
    answers wrong."""
    for row in order[:CANDIDATES]:
        if margin[row] >= 0:
            break
        number = "".join(str(d) for d in read[row][::-1])
        if number.startswith("0"):
            # a leading digit later than the failing one leaves that answer as it was
            number = "1" + number
        got = answer(number)
        if got != add_one(number):
            return number, got
    return None
