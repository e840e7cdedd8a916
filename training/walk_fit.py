"""The search for core.decide's walked certificate, tried when the one-step sets do not close:
sets keyed by the last WALK_KEYS digits, boxes in the principal axes of simulated copying
states, grown where an entry or a walk's open leaf pokes out. Only core.decide.check decides.
"""

from dataclasses import replace
from typing import Any

import numpy as np

from core import carrying, copying, decide
from core.cells import RnnCell
from core.certify import DEFAULT_TANH_ERROR
from core.copying import MAX_STEPS, CertificateError, Invariant
from core.decide import Checked
from core.interval import Array
from core.walk import OUT_OF_TIME, Walk
from core.weights import RnnWeights
from training import walk_pool
from training.sets_fit import WIDEST, deepen
from training.walk_pool import pooled_walk

# The walked certificate (core.walk), tried when the one-step sets do not close:
WALK_KEYS = 2  # sets keyed by the last two digits
WALK_STEPS = 6  # digit strings followed up to this length before they must be inside
WALK_TRAJECTORIES = 20000  # simulated histories, each WALK_LENGTH copying digits long
WALK_LENGTH = 24
WALK_FLOOR = 3e-3  # the least half-width along any axis: the tanh band's room
WALK_GROWTH = 1.05  # a set grows past what an open leaf needs by this factor
WALK_ROUNDS = 4
# the first round's sets are walked SHALLOW digits deep first: a digit read unsure there ends
# the fit at a fraction of the whole tree's cost (seed 3: its sets' walk met such a digit after
# 3 digits of one key's strings, in 1.2 s at 3 digits deep against 20 s walking them all 6)
SHALLOW = 3
# a round grown from one that left at most this many strings open, a tenth or less of the round
# before, is checked before it is walked: when the check takes it, the round's walks would only
# have walked its trees once more (seed 3: its last round, grown from 21 open strings after
# 452, walked 10 s before the same check; seed 9's, from 203 after 5 400, 21 s); when it
# refuses it, the check's walk is the round's
CHECK_OPEN = 300
# a walk of more nodes ends the walked fit: its sets are far from closing, and the steady fit
# is tried (counter-post's walks are a third of it; docs/proof.md, "Deeper, not wider")
WALK_MOST = 2_000_000
# The steady fit, tried when that fails: sets keyed by the last STEADY_KEYS digits, fitted to the
# copying states from the STEADY_FROM-th copied digit on only (the states just after a carry
# lie apart, and sets wide enough to hold them read wrong), and the states that absorb the
# carry walked into them for up to ENTRY_STEPS digits (Invariant.entry_steps)
STEADY_KEYS = 3
STEADY_FROM = 3
ENTRY_STEPS = 8
STEADY_ROUNDS = 30
# the steady sets start this much wider than their states' boxes: sets that hold the states
# just hold few of their images, and a first walk from them leaves so many strings open that it
# costs minutes (docs/proof.md, "The steady fit on every core")
STEADY_START = 1.4
# when growing makes a set read wrong, the fit goes back to the first round that left at most
# this many strings open and follows them to MAX_STEPS digits instead: grown to hold the far
# leaves, the sets read wrong, where two more digits close nearly all of them (docs/proof.md,
# "Deeper, not wider")
DEEPEN_OPEN = 100_000
# where the fit fails with STEADY_KEYS-digit keys, it is tried once more with the keys whose
# steady states spread past this half-width (along their widest principal axis) keyed one
# digit deeper: older digits spread them, on seeds whose slowest cycles forget slowly
# (docs/proof.md, "Deeper keys where the states spread")
SPREAD_WIDE = 0.4


def _walk_samples(
    weights: RnnWeights, proved: int, rng: np.random.Generator
) -> tuple[Array, copying.Ints]:
    """Float64 copying states and their histories (the last MAX_DEPTH digits' value): a run
    of at most `proved` nines, an absorbing digit, then WALK_LENGTH random digits."""
    shift = weights.w_ih.T + weights.b_ih + weights.b_hh
    unit = 10**copying.MAX_DEPTH
    chain = [np.zeros(weights.hidden_size)]
    for _ in range(proved):
        chain.append(np.tanh(weights.w_hh @ chain[-1] + shift[9]))
    run = rng.integers(0, proved + 1, WALK_TRAJECTORIES)
    absorbing = rng.integers(0, 9, WALK_TRAJECTORIES)
    states = np.tanh(np.asarray(chain)[run] @ weights.w_hh.T + shift[absorbing])
    history = ((10 ** np.minimum(run, copying.MAX_DEPTH) - 1) * 10 + absorbing) % unit
    found, tails = [], []
    for _ in range(WALK_LENGTH):
        digits = rng.integers(0, 10, WALK_TRAJECTORIES)
        states = np.tanh(states @ weights.w_hh.T + shift[digits])
        history = (history * 10 + digits) % unit
        found.append(states)
        tails.append(history)
    return np.concatenate(found), np.concatenate(tails)


def _principal_boxes(states: Array, owner: copying.Ints, count: int) -> tuple[Array, Array, Array]:
    """Per key: the centre, principal axes and half-widths of the box in those axes that
    holds its states (at least WALK_FLOOR wide along every axis)."""
    size = states.shape[1]
    centres, axes = np.zeros((count, size)), np.tile(np.eye(size), (count, 1, 1))
    widths = np.full((count, size), WALK_FLOOR)
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(count + 1))
    for key in range(count):
        mine = states[order[bounds[key] : bounds[key + 1]]]
        if len(mine) < 2:
            continue
        mean = mine.mean(axis=0)
        _, _, vt = np.linalg.svd(mine - mean, full_matrices=False)
        if vt.shape[0] != size:
            continue
        along = (mine - mean) @ vt.T
        low, high = along.min(axis=0), along.max(axis=0)
        centres[key] = mean + vt.T @ ((low + high) / 2)
        axes[key] = vt.T
        widths[key] = np.maximum((high - low) / 2, WALK_FLOOR)
    return centres, axes, widths


def fit_walk(
    weights: RnnWeights,
    proved: int,
    tanh_error: float = DEFAULT_TANH_ERROR,
    seed: int = 0,
    until: float | None = None,
) -> tuple[Invariant, Checked] | str:
    """A checked certificate of K = proved whose sets are followed by core.decide.walk for
    up to WALK_STEPS digits, or why none was found. The sets are boxes in the principal axes
    of simulated copying states keyed by their last WALK_KEYS digits, grown where an entry or
    a walk's open leaf pokes out, for up to WALK_ROUNDS rounds, or until `until` (the search's
    deadline on time.monotonic()). The first round's sets are walked SHALLOW digits deep first;
    a round grown from few open strings is checked before it is walked (CHECK_OPEN)."""
    cell = RnnCell(weights, tanh_error)
    try:
        entry_lo, entry_hi, tails, _ = decide.entries(cell, proved)
    except CertificateError as exc:
        return str(exc)
    keys = copying.uniform_keys(WALK_KEYS)
    states, history = _walk_samples(weights, proved, np.random.default_rng(seed))
    centres, axes, widths = _principal_boxes(states, copying.key_index(keys, history), len(keys))
    entry_keys = copying.key_index(keys, tails)
    failure = "no round"
    opened: list[int] = []  # the strings each round left open, as the next grew from it
    for turn in range(WALK_ROUNDS):
        invariant = Invariant(
            proved, WALK_KEYS, centres, axes * widths[:, None, :], keys, WALK_STEPS
        )
        sets = copying.sets_of(invariant)
        need = widths.copy()
        inside = copying.coordinates(sets, entry_keys, entry_lo, entry_hi)
        np.maximum.at(need, entry_keys, inside * widths[entry_keys] * WALK_GROWTH)
        found = (
            _checked_or_walked(weights, invariant, tanh_error, until)
            if _check_first(opened)
            else None
        )
        if isinstance(found, tuple):
            return found
        walked = found if found is not None else _round_walk(cell, sets, turn == 0, until)
        if walked.failure == OUT_OF_TIME:
            return _out_of_time(failure)
        if walked.nodes > WALK_MOST:
            return f"the walked sets are far from closing: {walked.failure}"
        if walked.slack <= 0:
            return walked.failure or "a walk's readout fails"
        if walked.failure is None and inside.max() <= sets.limit[entry_keys].min():
            return _checked(weights, invariant, tanh_error, None)
        failure = walked.failure or "an entry leaves its set"
        opened.append(len(walked.open_targets))
        need = grown(need, widths, [walked])
        if need.max() > WIDEST:
            return f"the walked sets grow past tanh's range ({failure})"
        widths = need
    return f"no walked certificate after {WALK_ROUNDS} rounds ({failure})"


def fit_steady(
    weights: RnnWeights,
    proved: int,
    tanh_error: float = DEFAULT_TANH_ERROR,
    carry: carrying.Set | None = None,
    seed: int = 0,
    until: float | None = None,
) -> tuple[Invariant, Checked] | str:
    """A checked certificate of K = proved with walked entries (Invariant.entry_steps), or why
    none was found: boxes in the principal axes of the steady copying states keyed by their
    last STEADY_KEYS digits (`fit_keyed`), and where that fails, once more with the keys whose
    states spread past SPREAD_WIDE keyed one digit deeper (`spread_keys`). Given a carrying
    set, the certificate carries it (every run) when it checks so."""
    states, history = _walk_samples(weights, proved, np.random.default_rng(seed))
    steady = np.repeat(np.arange(1, WALK_LENGTH + 1), WALK_TRAJECTORIES) >= STEADY_FROM
    states, history = states[steady], history[steady]
    keys = copying.uniform_keys(STEADY_KEYS)
    found = fit_keyed(weights, proved, tanh_error, carry, until, keys, states, history)
    if not isinstance(found, str) or found.startswith(OUT_OF_TIME):
        return found
    deeper = spread_keys(keys, states, history)
    if len(deeper) == len(keys):
        return found
    return fit_keyed(
        weights, proved, tanh_error, carry, until, deeper, states, history, deep_at_few=True
    )


def spread_keys(keys: copying.Ints, states: Array, history: copying.Ints) -> copying.Ints:
    """The key codes with each key whose states (N, H), by history (N,), spread past
    SPREAD_WIDE along their widest principal axis split into its ten keys one digit deeper
    (training.sets_fit.deepen)."""
    _, _, widths = _principal_boxes(states, copying.key_index(keys, history), len(keys))
    return deepen(keys, keys[widths.max(axis=1) > SPREAD_WIDE])


def fit_keyed(
    weights: RnnWeights,
    proved: int,
    tanh_error: float,
    carry: carrying.Set | None,
    until: float | None,
    keys: copying.Ints,
    states: Array,
    history: copying.Ints,
    deep_at_few: bool = False,
) -> tuple[Invariant, Checked] | str:
    """fit_steady's fit with these keys to these steady states (N, H) and histories (N,): boxes
    STEADY_START times their states' principal boxes, grown where a walk's open leaf pokes out
    (the sets' own walk, the absorbed states' and, given a carrying set, its absorbed images'),
    for up to STEADY_ROUNDS rounds, or until `until` (the search's deadline on
    time.monotonic()). Where a growth makes a set read wrong, the sets' strings are followed to
    MAX_STEPS digits from the first round that left at most DEEPEN_OPEN open, and grown from
    there; deep_at_few: as soon as a round leaves that few open (the second fit's rounds cost
    more than a deeper walk of few strings). A round grown from few open strings is checked
    before it is walked (CHECK_OPEN)."""
    cell = RnnCell(weights, tanh_error)
    deepest = int(copying.depths(keys).max())
    centres, axes, widths = _principal_boxes(states, copying.key_index(keys, history), len(keys))
    widths *= STEADY_START
    try:  # the walks' roots: the absorbed states and the carrying set's images, by key
        starts = [decide.absorbed_roots(cell, proved, keys)[0]]
    except CertificateError as exc:
        return str(exc)
    if carry is not None:
        starts.append(carrying.absorbed_roots(carrying.absorbing(cell, carry), keys))
    failure, steps = "no round", WALK_STEPS
    few: Array | None = None  # the sets' half-widths in the first round that left few open
    opened: list[int] = []  # the strings each round left open, as the next grew from it
    for _ in range(STEADY_ROUNDS):
        shapes = axes * widths[:, None, :]
        invariant = Invariant(
            proved, deepest, centres, shapes, keys, steps, entry_steps=ENTRY_STEPS
        )
        if _check_first(opened):
            at_once = _checked_at_once(weights, invariant, tanh_error, carry)
            if at_once is not None:
                return at_once
        sets = copying.sets_of(invariant)
        walks = [pooled_walk(cell, sets, steps, keep_going=True, until=until)]
        walks += [
            pooled_walk(cell, sets, ENTRY_STEPS, keep_going=True, roots=r, until=until)
            for r in starts
        ]
        if any(w.failure == OUT_OF_TIME for w in walks):
            return _out_of_time(failure)
        unsure = next((w for w in walks if w.slack <= 0), None)
        if unsure is not None and few is not None and steps < MAX_STEPS:
            widths, steps, opened = few, MAX_STEPS, []
            continue
        if unsure is not None:
            return unsure.failure or "a walk's readout fails"
        if all(w.failure is None for w in walks):
            return _checked(weights, invariant, tanh_error, carry)
        failure = next(w.failure for w in walks if w.failure is not None) or failure
        if few is None and sum(len(w.open_targets) for w in walks) <= DEEPEN_OPEN:
            few = widths
            if deep_at_few:
                steps, opened = MAX_STEPS, []
                continue
        opened.append(sum(len(w.open_targets) for w in walks))
        widths = grown(widths, widths, walks)
        if widths.max() > WIDEST:
            return f"the steady sets grow past tanh's range ({failure})"
    return f"no steady certificate after {STEADY_ROUNDS} rounds ({failure})"


def with_carrying(
    weights: RnnWeights, invariant: Invariant, carry: carrying.Set, tanh_error: float
) -> tuple[Invariant, Checked]:
    """The certificate with the carrying set attached, checked in one pass (every run);
    CertificateError when the check refuses it."""
    closed = replace(invariant, carrying_centre=carry.centre, carrying_shape=carry.shape)
    return closed, walk_pool.check(weights, closed, tanh_error)


def _checked(
    weights: RnnWeights, invariant: Invariant, tanh_error: float, carry: carrying.Set | None
) -> tuple[Invariant, Checked] | str:
    """The certificate checked in one pass, with the carrying set attached when one is given
    (its images were walked with the sets'), else or when that fails without it; or why not."""
    if carry is not None:
        closed = _checked_at_once(weights, invariant, tanh_error, carry)
        if closed is not None:
            return closed  # else K = proved may still hold: checked below
    try:
        return invariant, walk_pool.check(weights, invariant, tanh_error)
    except CertificateError as exc:
        return str(exc)


def _check_first(opened: list[int]) -> bool:
    """Whether a round grown from rounds that left these many strings open (in order) is
    checked before it is walked (CHECK_OPEN)."""
    return len(opened) >= 2 and opened[-1] <= CHECK_OPEN and 10 * opened[-1] <= opened[-2]


def _round_walk(cell: RnnCell, sets: copying.Sets, first: bool, until: float | None) -> Walk:
    """A round's walk of its sets, on past a leaf that stays open; the first round's walks
    SHALLOW digits deep first, and stop there when a digit is read unsure."""
    for depth in [SHALLOW, WALK_STEPS] if first else [WALK_STEPS]:
        walked = pooled_walk(cell, sets, depth, keep_going=True, most=WALK_MOST, until=until)
        if walked.slack <= 0 or walked.failure == OUT_OF_TIME:
            break
    return walked


def _checked_or_walked(
    weights: RnnWeights, invariant: Invariant, tanh_error: float, until: float | None
) -> tuple[Invariant, Checked] | Walk | None:
    """The certificate checked at once, its sets walked as a round walks them (on past a leaf
    that stays open): checked when the check takes it; when the check refuses it after its
    walk, that walk, which is the round's (counter-post's third round: 2.8 s not walked
    twice); else None. The walked fit's sets have no walked entries (Invariant.entry_steps is
    0): the check's one walk is of the sets."""
    walks: list[Walk] = []

    def walker(cell: RnnCell, sets: copying.Sets, longest: int, **options: Any) -> Walk:
        walks.append(
            pooled_walk(
                cell, sets, longest, keep_going=True, most=WALK_MOST, until=until, **options
            )
        )
        return walks[-1]

    try:
        return invariant, decide.check(weights, invariant, tanh_error, walker=walker)
    except CertificateError:
        return walks[-1] if walks else None


def _checked_at_once(
    weights: RnnWeights, invariant: Invariant, tanh_error: float, carry: carrying.Set | None
) -> tuple[Invariant, Checked] | None:
    """The certificate a round returns when its walks all close, checked before they are
    walked: with the carrying set, when one is given (the one without it is left to the walks,
    whose growth may yet close the carrying set's images). None when the check refuses it: the
    walks then say where to grow."""
    try:
        if carry is not None:
            return with_carrying(weights, invariant, carry, tanh_error)
        return invariant, walk_pool.check(weights, invariant, tanh_error)
    except CertificateError:
        return None


def _out_of_time(failure: str) -> str:
    """Why a fit stopped at the search's deadline, and where it stood."""
    return f"{OUT_OF_TIME} (the last round: {failure})" if failure != "no round" else OUT_OF_TIME


def grown(need: Array, widths: Array, walks: list[Walk]) -> Array:
    """The half-widths `need` (the sets' `widths` or more) grown to hold every leaf the walks
    left open."""
    need = need.copy()
    for walked in walks:
        targets = walked.open_targets
        np.maximum.at(need, targets, walked.open_coordinates * widths[targets] * WALK_GROWTH)
    return need
