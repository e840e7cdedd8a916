"""Shorter walks for a walked certificate (core.walk), so that the service's check at load is
cheap: the sets grown, a little at a time, to take in the digit trees' children that almost
lie in their key's set already, while the walk gets smaller and its readout stays sure; then
trimmed to what they must hold, which makes every set's own digit tree smaller.

A child that lies just outside its set is walked on for its ten children, and theirs: most of
a walk's nodes are children of nodes that missed their set by a few per cent (docs/proof.md,
"What did make it smaller"). Growing a set where such a child pokes out closes that child and
every one near it, while its own images grow by less than the tree shrinks. Only
core.decide.check decides: the search may be wrong, never the certificate.
"""

from dataclasses import replace

import numpy as np

from core import copying, decide
from core.cells import RnnCell
from core.copying import MAX_STEPS, CertificateError, Invariant
from core.decide import Checked
from core.interval import Array
from core.walk import Walk, walk
from core.weights import RnnWeights
from training.walk_fit import grown

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


def shorten(
    weights: RnnWeights, invariant: Invariant, checked: Checked, tanh_error: float
) -> tuple[Invariant, Checked]:
    """The certificate with its sets grown, then trimmed, where that shortens its walk
    (followed for up to MAX_STEPS digits), checked in one pass: the trimmed one, else the
    grown one when the check refuses it (a trim holds the sets' walk and the entries, not a
    carrying set's images), else the certificate as it was."""
    if invariant.steps <= 1:
        return invariant, checked
    cell = RnnCell(weights, tanh_error)
    widths = np.linalg.norm(invariant.shapes, axis=1)  # (S, H): the axes are orthonormal
    axes = invariant.shapes / widths[:, None, :]
    best = replace(invariant, steps=MAX_STEPS)
    sets = copying.sets_of(best)
    last = walk(cell, sets, MAX_STEPS, most=LARGEST, hold=True)  # the shortest walk so far
    if last.failure is not None:
        return invariant, checked
    changed, trials = False, 0
    for level in LEVELS:
        reach = REACH
        near = walk(cell, sets, level, keep_going=True)  # its open children, kept while refused
        while reach > LEAST_REACH and trials < TRIALS:
            trials += 1
            wider = _taken_in(near, sets, widths, reach)
            candidate = replace(best, shapes=axes * wider[:, None, :])
            trial = copying.sets_of(candidate)
            shorter = _closing(cell, trial, int(last.nodes * (1 - GAIN)))
            if shorter is not None:
                best, sets, widths, last, changed = candidate, trial, wider, shorter, True
                near = walk(cell, sets, level, keep_going=True)
            else:
                reach = 1 + (reach - 1) / 2
    grown_best, trimmed = best if changed else None, None
    for _ in range(TRIMS):
        narrower = _trimmed(cell, best, sets, widths, last.held)
        candidate = replace(best, shapes=axes * narrower[:, None, :])
        trial = copying.sets_of(candidate)
        shorter = _closing(cell, trial, int(last.nodes * (1 - GAIN)))
        if shorter is None:
            break
        best, sets, widths, last, trimmed = candidate, trial, narrower, shorter, candidate
    for certificate in (trimmed, grown_best):
        if certificate is None:
            continue
        try:
            return certificate, decide.check(weights, certificate, tanh_error)
        except CertificateError:
            continue
    return invariant, checked


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
    held = leaves.copy()
    if invariant.entry_steps:
        roots, _ = decide.absorbed_roots(cell, invariant.proved, sets.keys)
        entered = walk(cell, sets, invariant.entry_steps, roots=roots, hold=True).held
        held = np.maximum(held, entered)
    else:
        lo, hi, tails, _ = decide.entries(cell, invariant.proved)
        keys = copying.key_index(sets.keys, tails)
        np.maximum.at(held, keys, copying.coordinates(sets, keys, lo, hi))
    return widths * np.clip(held * TRIM, THINNEST, 1.0)


def _closing(cell: RnnCell, sets: copying.Sets, most: int) -> Walk | None:
    """The sets' walk (its leaves held) when it closes within `most` nodes with every readout
    sure by SLACK (the sets' own included), else None (a walk past `most` is stopped there)."""
    slack, _ = copying.readout(cell, sets.centres, sets.shapes, sets.keys % 10)
    if slack.min() <= SLACK:
        return None
    walked = walk(cell, sets, MAX_STEPS, most=most, hold=True)
    return walked if walked.failure is None and walked.slack >= SLACK else None
