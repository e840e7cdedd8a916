"""Shorter walks for a walked certificate (core.walk), so that the service's check at load is
cheap: the sets grown, a little at a time, to take in the digit trees' children that almost
lie in their key's set already, while the walk gets smaller and its readout stays sure; then
trimmed to what they must hold, which makes every set's own digit tree smaller; then polished,
each set scaled a few per cent up or down where that is worth more than it costs.

A child that lies just outside its set is walked on for its ten children, and theirs: most of
a walk's nodes are children of nodes that missed their set by a few per cent (docs/proof.md,
"What did make it smaller"). Growing a set where such a child pokes out closes that child and
every one near it, while its own images grow by less than the tree shrinks. Only
core.decide.check decides: the search may be wrong, never the certificate.
"""

from dataclasses import replace
from functools import partial

import numpy as np

from core import copying, decide
from core.cells import RnnCell
from core.copying import MAX_STEPS, CertificateError, Invariant
from core.decide import Checked
from core.interval import Array
from core.walk import Walk, walk
from core.weights import RnnWeights
from training import walk_pool
from training.walk_fit import grown
from training.walk_pool import pooled_walk

# the walk's levels whose open children are taken in, in turn (most of a walk's nodes are the
# children of nodes open at levels 2-4)
LEVELS = (3, 2, 4, 3)
REACH = 1.3  # children at most this far out of their set (in its half-widths) are taken in
LEAST_REACH = 1.02  # below this a level is done (each refusal halves the reach past 1)
GAIN = 0.02  # a growth must cut the walk's nodes by at least this fraction
SLACK = 0.02  # and leave every readout on the walk sure by at least this many logits
TRIALS = 16  # growths tried in all (each costs two walks)
TRIM = 1.02  # a set is trimmed to this much above what it must hold, along each axis
TRIMS = 4  # trims tried at most (each costs two walks)
THINNEST = 0.5  # a trim keeps at least this much of each half-width
LARGEST = 500_000  # a walk of more nodes is left as it is (each walk takes seconds a million)
POLISH = 0.04  # a polish scales a set by 1 - POLISH or 1 + POLISH
POLISHES = 8  # polish rounds at most (each walks every set's own tree twice, and the whole once)
POLISH_GAIN = 0.005  # a polish round must cut the walk's nodes by at least this fraction
OPENED = 12  # the nodes a leaf that opens is taken to cost: its ten children, and a few more


def shorten(
    weights: RnnWeights, invariant: Invariant, checked: Checked, tanh_error: float
) -> tuple[Invariant, Checked]:
    """The certificate with its sets grown, then trimmed, then polished and trimmed again,
    where that shortens its walk (followed for up to MAX_STEPS digits), checked in one pass:
    the last one the check takes (a trim holds the sets' walk and the entries, not a carrying
    set's images), else the certificate as it was."""
    if invariant.steps <= 1:
        return invariant, checked
    cell = RnnCell(weights, tanh_error)
    widths = np.linalg.norm(invariant.shapes, axis=1)  # (S, H): the axes are orthonormal
    axes = invariant.shapes / widths[:, None, :]
    best = replace(invariant, steps=MAX_STEPS)
    sets = copying.sets_of(best)
    # the shortest walk so far (leaves held, children traced: what trims and polish start from)
    last = pooled_walk(cell, sets, MAX_STEPS, most=LARGEST, hold=True, trace=True)
    if last.failure is not None:
        return invariant, checked
    changed, trials = False, 0
    for level in LEVELS:
        reach = REACH
        # its open children, kept while refused
        near = pooled_walk(cell, sets, level, keep_going=True)
        while reach > LEAST_REACH and trials < TRIALS:
            trials += 1
            wider = _taken_in(near, sets, widths, reach)
            candidate = replace(best, shapes=axes * wider[:, None, :])
            trial = copying.sets_of(candidate)
            shorter = _closing(cell, trial, int(last.nodes * (1 - GAIN)))
            if shorter is not None:
                best, sets, widths, last, changed = candidate, trial, wider, shorter, True
                near = pooled_walk(cell, sets, level, keep_going=True)
            else:
                reach = 1 + (reach - 1) / 2
    grown_best = best if changed else None
    best, sets, widths, last, trimmed = _trims(cell, best, sets, widths, axes, last)
    shipped = [trimmed, grown_best]
    rounds = _polished(cell, best, sets, last)
    if rounds:
        # scaled sets hold their leaves with room again along some axes: trimmed once more
        best, sets, last = rounds[-1]
        widths = np.linalg.norm(best.shapes, axis=1)
        *_, retrimmed = _trims(cell, best, sets, widths, axes, last)
        shipped = [retrimmed, *(polished for polished, _, _ in reversed(rounds)), *shipped]
    for certificate in shipped:
        if certificate is None:
            continue
        try:
            return certificate, walk_pool.check(weights, certificate, tanh_error)
        except CertificateError:
            continue
    return invariant, checked


def _trims(
    cell: RnnCell,
    best: Invariant,
    sets: copying.Sets,
    widths: Array,
    axes: Array,
    last: Walk,
) -> tuple[Invariant, copying.Sets, Array, Walk, Invariant | None]:
    """Up to TRIMS trims, each kept when the walk (its leaves held) closes with GAIN fewer
    nodes and its readout sure by SLACK: the certificate, its sets, half-widths and walk after
    them, and the last trimmed certificate (None when no trim was kept; not checked)."""
    trimmed = None
    for _ in range(TRIMS):
        narrower = _trimmed(cell, best, sets, widths, last.held)
        candidate = replace(best, shapes=axes * narrower[:, None, :])
        trial = copying.sets_of(candidate)
        shorter = _closing(cell, trial, int(last.nodes * (1 - GAIN)))
        if shorter is None:
            break
        best, sets, widths, last, trimmed = candidate, trial, narrower, shorter, candidate
    return best, sets, widths, last, trimmed


def _taken_in(near: Walk, sets: copying.Sets, widths: Array, reach: float) -> Array:
    """The half-widths grown to hold every child a walk of the sets left open at its depth that
    lies outside its set by at most `reach` of it."""
    over = near.open_coordinates.max(axis=1, initial=0.0) / sets.limit[near.open_targets]
    close = over <= reach
    taken = replace(
        near, open_targets=near.open_targets[close], open_coordinates=near.open_coordinates[close]
    )
    return grown(widths, widths, [taken])


def _trimmed(
    cell: RnnCell, invariant: Invariant, sets: copying.Sets, widths: Array, leaves: Array
) -> Array:
    """The half-widths trimmed to TRIM times the largest coordinate, along each axis, of what
    each set must hold: the leaves of the sets' walk that close in it (`leaves`, Walk.held),
    and the states that enter it after a carry (the entries, or the leaves of their walk)."""
    held = np.maximum(leaves, _entries_held(cell, invariant, sets))
    return widths * np.clip(held * TRIM, THINNEST, 1.0)


def _entries_held(cell: RnnCell, invariant: Invariant, sets: copying.Sets) -> Array:
    """Per set, the largest of each coordinate over the states that enter it after a carry
    (the entries, or the leaves of their walk), (S, H)."""
    if invariant.entry_steps:
        roots, _ = decide.absorbed_roots(cell, invariant.proved, sets.keys)
        return pooled_walk(cell, sets, invariant.entry_steps, roots=roots, hold=True).held
    held = np.zeros_like(sets.centres)
    lo, hi, tails, _ = decide.entries(cell, invariant.proved)
    keys = copying.key_index(sets.keys, tails)
    np.maximum.at(held, keys, copying.coordinates(sets, keys, lo, hi))
    return held


def _polished(
    cell: RnnCell, invariant: Invariant, sets: copying.Sets, last: Walk
) -> list[tuple[Invariant, copying.Sets, Walk]]:
    """The sets (their walk `last`, traced) scaled, each by 1 - POLISH or 1 + POLISH or left,
    in rounds while a round cuts the walk by POLISH_GAIN: each round's certificate (not
    checked: shorten checks them, the last first), with its sets and walk (leaves held).

    A round weighs each scaling of one set by what it changes: the set's own digit tree,
    walked again, and the other trees' children measured in that set. Scaled by f, a child's
    coordinates there scale by 1 / f: grown, its open children within f close (each saves
    its ten children, at least); shrunk, its leaves past f open (each costs OPENED), and none
    may open at the walk's deepest level or let an entry out. The scalings that gain are
    taken together, the best first; when the walk refuses them, the better half, and so on,
    while the scalings tried expect to gain POLISH_GAIN (on counter-post the walks cut
    about what their scalings expected, docs/proof.md)."""
    traced = last if _sets_sure(cell, sets) and _walk_sure(last) else None
    rounds: list[tuple[Invariant, copying.Sets, Walk]] = []
    for _ in range(POLISHES):
        if traced is None:
            break
        gains = _scalings(cell, invariant, sets, traced)
        while gains and -sum(gain for gain, _, _ in gains) >= POLISH_GAIN * traced.nodes:
            taken = _scaled(cell, invariant, gains, traced.nodes)
            if taken is not None:
                break
            gains = gains[: len(gains) // 2]
        else:
            break
        invariant, sets, traced = taken
        rounds.append(taken)
    return rounds


def _scaled(
    cell: RnnCell, invariant: Invariant, gains: list[tuple[int, int, float]], nodes: int
) -> tuple[Invariant, copying.Sets, Walk] | None:
    """The certificate with these scalings, with its sets and traced walk, when that walk cuts
    `nodes` by POLISH_GAIN with every readout sure by SLACK."""
    candidate = _rescaled(invariant, {at: factor for _, at, factor in gains})
    sets = copying.sets_of(candidate)
    shorter = _closing(cell, sets, int(nodes * (1 - POLISH_GAIN)))
    return None if shorter is None else (candidate, sets, shorter)


def _scalings(
    cell: RnnCell, invariant: Invariant, sets: copying.Sets, traced: Walk
) -> list[tuple[int, int, float]]:
    """The scalings of one set each that `_polished` expects to cut the walk: (the nodes it
    expects to gain, negative; the set; the factor), the best first."""
    trace = traced.trace
    assert trace is not None
    own = np.bincount(trace.start, minlength=len(sets.keys))
    entered = _entries_held(cell, invariant, sets).max(axis=1) / sets.limit
    tried: list[tuple[int, float, int]] = []  # a set, its factor, its change to the other trees
    for at in range(len(sets.keys)):
        there = trace.target == at
        others = there & (trace.start != at) & ~trace.last
        for factor in (1 - POLISH, 1 + POLISH):
            if factor < 1:
                opening = trace.closed & (trace.ratio > factor)
                if entered[at] > factor or (there & opening & trace.last).any():
                    continue
                change = OPENED * int((others & opening).sum())
            else:
                change = -10 * int((others & ~trace.closed & (trace.ratio <= factor)).sum())
            tried.append((at, factor, change))
    trees = walk_pool.mapped(partial(_own_tree, cell, invariant), [t[:2] for t in tried])
    best: dict[int, tuple[int, int, float]] = {}
    for (at, factor, change), tree in zip(tried, trees, strict=True):
        if tree.failure is None and tree.slack >= SLACK:
            option = (tree.nodes - int(own[at]) + change, at, factor)
            best[at] = min(best.get(at, option), option)
    return sorted(option for option in best.values() if option[0] < 0)


def _own_tree(cell: RnnCell, invariant: Invariant, scaling: tuple[int, float]) -> Walk:
    """The digit tree of one set, scaled by a factor, walked from it alone."""
    at, factor = scaling
    trial = copying.sets_of(_rescaled(invariant, {at: factor}))
    return walk(cell, trial, MAX_STEPS, starts=np.array([at]))


def _rescaled(invariant: Invariant, factors: dict[int, float]) -> Invariant:
    """The certificate with set i scaled by factors[i], the others as they are."""
    scale = np.ones(len(invariant.centres))
    for at, factor in factors.items():
        scale[at] = factor
    return replace(invariant, shapes=invariant.shapes * scale[:, None, None])


def _closing(cell: RnnCell, sets: copying.Sets, most: int) -> Walk | None:
    """The sets' walk (its leaves held, its children traced) when it closes within `most`
    nodes with every readout sure by SLACK (the sets' own included), else None (a walk past
    `most` is stopped there)."""
    if not _sets_sure(cell, sets):
        return None
    walked = pooled_walk(cell, sets, MAX_STEPS, most=most, hold=True, trace=True)
    return walked if _walk_sure(walked) else None


def _sets_sure(cell: RnnCell, sets: copying.Sets) -> bool:
    """Every set's own readout sure by more than SLACK."""
    slack, _ = copying.readout(cell, sets.centres, sets.shapes, sets.keys % 10)
    return bool(slack.min() > SLACK)


def _walk_sure(walked: Walk) -> bool:
    """The walk closed, every readout on it sure by SLACK."""
    return walked.failure is None and walked.slack >= SLACK
