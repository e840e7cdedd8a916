"""The walk of a certificate with steps > 1 (core.decide's argument): from every copying set,
every digit string followed as a zonotope until it lies in its key's set, every digit read on
the way sure to win.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core import interval, zonotope
from core.cells import SOFTMAX_SLACK, RnnCell
from core.copying import CHAIN, Ints, Sets, digit_name, key_index
from core.interval import Array


def zonotope_coordinates(sets: Sets, targets: Ints, centres: Array, generators: Array) -> Array:
    """|M (x - c)| over zonotopes (N, H), (N, H, g) in the sets of their targets (N,), bounded
    above per coordinate, (N, H)."""
    inverse = sets.inverses[targets]
    target = sets.centres[targets]
    size, terms = centres.shape[-1], generators.shape[-1]
    value = np.abs(np.einsum("nij,nj->ni", inverse, centres - target))
    spread = np.abs(inverse @ generators).sum(axis=-1)
    scale = np.abs(centres) + np.abs(target) + np.abs(generators).sum(axis=-1)
    slop = interval.gamma64(size + terms + 4) * np.einsum("nij,nj->ni", np.abs(inverse), scale)
    bound: Array = interval.upper(value + spread + slop, size + terms + 2)
    return bound


@dataclass(frozen=True)
class Trace:
    """Every child a walk measured, (N,) each, N = Walk.nodes, in the walk's order."""

    target: Ints  # the set it was measured in
    ratio: Array  # its largest coordinate in that set over the set's limit
    closed: npt.NDArray[np.bool_]  # a leaf: inside its set (ratio <= 1, up to that division)
    start: Ints  # where its string starts: a set's index (or a root's)
    last: npt.NDArray[np.bool_]  # read at the walk's deepest level: no children follow


@dataclass(frozen=True)
class Walk:
    """The digit trees from every copying set: how far they went and what they met."""

    nodes: int  # zonotope images computed
    slack: float  # the least readout slack at any node (must be > 0)
    margin: float  # the least logit gap at any node
    worst: float  # the largest max-coordinate minus limit among the leaves that closed
    # the leaves still open at the deepest level: their targets (N,) and coordinates (N, H)
    open_targets: Ints
    open_coordinates: Array
    failure: str | None  # the first reason the walk fails, or None
    # per set, the largest of each coordinate over the leaves that closed in it (S, H); zeros
    # unless the walk was asked to hold them
    held: Array
    # every child measured, when the walk was asked to trace them (a search's); else None
    trace: Trace | None = None


# core.walk.walk, or a walk of the same trees on several cores (training.walk_pool)
Walker = Callable[..., Walk]

# a walk past its search's deadline (walk's `until`) fails with this
OUT_OF_TIME = "the search ran out of time"
# a walk its `cut` stopped fails with this: what it walked is past where a larger walk ends
CUT = "the walk was cut short: an earlier part ends it"
# a walk's batch: at most this many parent nodes (their ten children's bounds are kept); few
# enough that a batch's arrays stay in cache (docs/benchmarks.md). Each batch of starts is
# walked the same whatever other starts are walked with it (training.walk_pool's chunks)
BATCH = 128
# the products (M diag(slope)) moved are taken for parents in groups of at most this many
# float64s of output (they stay in cache while their |.| is summed)
_PRODUCT_FLOATS = 1 << 17


@dataclass(frozen=True)
class Roots:
    """Zonotopes walked instead of the sets (the states that absorb the carry)."""

    centres: Array  # (N, H)
    rows: Array  # (N, g, H): generators as rows
    at: Ints  # (N,): each one's key, as an index into the sets
    names: tuple[str, ...]  # each one, as a failure names it


def roots_of(
    keys: Ints,
    centres: list[Array],
    generators: list[Array],
    histories: list[int],
    names: list[str],
) -> Roots:
    """Zonotopes (n_i, H), (n_i, H, g_i) by groups as roots of a walk, each from the key (an
    index into the certificate's key codes) of its history (the value of its last MAX_DEPTH
    digits, core.copying.key_index)."""
    terms = max(g.shape[-1] for g in generators)
    rows = [np.pad(g, ((0, 0), (0, 0), (0, terms - g.shape[-1]))) for g in generators]
    return Roots(
        np.concatenate(centres),
        np.ascontiguousarray(np.concatenate(rows).transpose(0, 2, 1)),
        key_index(keys, np.asarray(histories, dtype=np.int64)),
        tuple(names),
    )


@dataclass
class Frontier:
    """Open walk nodes at one level."""

    centres: Array  # (n, H)
    rows: Array  # (n, g, H): generators as rows (zonotope.branch)
    size: Array  # (n, H): an upper bound of each one's sum of |generators| per unit
    at: Ints  # (n,): each node's key
    start: Ints  # (n,): the key of the set it came from
    level: int  # digits read


def walk(
    cell: RnnCell,
    sets: Sets,
    longest: int,
    keep_going: bool = False,
    roots: Roots | None = None,
    most: int | None = None,
    hold: bool = False,
    trace: bool = False,
    starts: Ints | None = None,
    until: float | None = None,
    cut: Callable[[], bool] | None = None,
    frontier: Frontier | None = None,
    deal: Callable[[Frontier], bool] | None = None,
) -> Walk:
    """From every set P_s (or every root, when given), read every digit string w, one digit at
    a time, as a zonotope (core.zonotope): at every node the digit just read must win
    (readout), and the node is a leaf once its image lies in the set of its key (the key of
    s w); a node still outside after `longest` digits fails the walk. keep_going: walk every
    key even after a leaf stays open (the search's measure of where the sets must grow), but
    stop at a readout failure, which growing the sets cannot mend. most: fail once more than
    this many nodes are built (a search's budget). hold: measure Walk.held; trace: keep
    Walk.trace; starts: walk from these sets (or roots) only, by index; until: fail
    (OUT_OF_TIME) once time.monotonic() passes it, a clock the search's forked workers share;
    cut: fail (CUT) once it returns True, asked between batches (a pooled walk's chunk past
    one that already ends the walk: training.walk_pool); frontier: walk from this batch of
    nodes (one another walk dealt out) instead of the sets or roots; deal: asked with each
    batch one digit in before it is walked, True when another process walks it (then this walk
    does not). A search's, all eight.

    Every start key's nodes are walked together, in batches of a bounded size taken depth
    first (the tree is the same whatever the order); a child is built only when it is not a
    leaf."""
    size = cell.state_size
    nodes, least, worst, margin = 0, math.inf, -math.inf, math.inf
    open_targets: list[Ints] = []
    open_coordinates: list[Array] = []
    failure: str | None = None
    unsure = False  # a readout failed: nothing more to measure
    held = np.zeros_like(sets.centres)
    traced: list[tuple[Ints, Array, npt.NDArray[np.bool_], Ints, bool]] = []
    if frontier is not None:
        pending = [frontier]
    elif roots is None:
        every = np.arange(len(sets.keys)) if starts is None else starts
        rows = np.ascontiguousarray(sets.shapes[every].transpose(0, 2, 1))
        bound = zonotope.radius_rows(rows)
        pending = [Frontier(sets.centres[every], rows, bound, every, every, 0)]
    else:
        every = np.arange(len(roots.at)) if starts is None else starts
        rows = roots.rows[every]
        bound = zonotope.radius_rows(rows)
        pending = [Frontier(roots.centres[every], rows, bound, roots.at[every], every, 0)]

    def origin(start: int) -> str:
        if roots is None:
            return f"the set of key {digit_name(int(sets.keys[start]))}"
        return roots.names[start]

    while pending and not unsure and (failure is None or keep_going):
        node = pending.pop()
        if len(node.at) > BATCH:
            parts = range(0, len(node.at), BATCH)
            # the first part on top: the walk meets its roots in order, and names the first
            pending += [_part(node, slice(i, i + BATCH)) for i in reversed(parts)]
            continue
        if node.level == 1 and deal is not None and deal(node):
            continue
        level = node.level + 1
        branch = zonotope.branch(
            cell.weights, node.centres, node.rows, cell.activation_error, node.size
        )
        count = len(node.at)
        nodes += 10 * count
        if most is not None and nodes > most:
            failure = f"the walk passes {most} nodes"
            break
        if until is not None and time.monotonic() > until:
            failure = OUT_OF_TIME
            break
        if cut is not None and cut():
            failure = CUT
            break
        targets = sets.after[node.at].T  # (10, n)
        slack, gap, inside = _measure(cell, sets, targets, branch)
        least, margin = min(least, float(slack.min())), min(margin, float(gap.min()))
        origins = np.broadcast_to(node.start, (10, count))
        if slack.min() <= 0 and not unsure:  # the reason, even after a leaf stayed open
            unsure = True
            digit, where = np.unravel_index(int(slack.argmin()), slack.shape)
            failure = (
                f"from {origin(int(node.start[where]))}, after {level} digits, digit {digit} "
                "is not sure to win"
            )
        over = inside.max(axis=2) - sets.limit[targets]
        closed = over <= 0
        if trace:
            ratio = inside.max(axis=2) / sets.limit[targets]
            traced.append((targets, ratio, closed, origins, level == longest))
        if closed.any():
            worst = max(worst, float(over[closed].max()))
            if hold:
                np.maximum.at(held, targets[closed], inside[closed])
        digits, parents = np.nonzero(~closed)
        if len(digits) == 0:
            continue
        if level == longest:
            open_targets.append(targets[digits, parents])
            open_coordinates.append(inside[digits, parents])
            if failure is None:
                failure = (
                    f"from {origin(int(origins[digits, parents].min()))}, {len(digits)} digit "
                    f"strings of {longest} still leave their sets"
                )
            continue
        pending.append(
            Frontier(
                branch.centres[digits, parents],
                branch.children(digits, parents),
                branch.size[digits, parents],
                targets[digits, parents],
                origins[digits, parents],
                level,
            )
        )
    empty = np.zeros((0, size))
    return Walk(
        nodes,
        least,
        margin,
        worst,
        np.concatenate(open_targets) if open_targets else np.zeros(0, dtype=np.int64),
        np.concatenate(open_coordinates) if open_coordinates else empty,
        failure,
        held,
        _traced(traced) if trace else None,
    )


def _traced(parts: list[tuple[Ints, Array, npt.NDArray[np.bool_], Ints, bool]]) -> Trace:
    """The batches' children, (10, n) each, as one Trace."""
    if not parts:
        none = np.zeros(0, dtype=np.int64)
        return Trace(none, np.zeros(0), none.astype(bool), none, none.astype(bool))
    return Trace(
        np.concatenate([p[0].ravel() for p in parts]),
        np.concatenate([p[1].ravel() for p in parts]),
        np.concatenate([p[2].ravel() for p in parts]),
        np.concatenate([p[3].ravel() for p in parts]),
        np.concatenate([np.full(p[0].size, p[4]) for p in parts]),
    )


def _part(node: Frontier, part: slice) -> Frontier:
    return Frontier(
        node.centres[part],
        node.rows[part],
        node.size[part],
        node.at[part],
        node.start[part],
        node.level,
    )


def _measure(
    cell: RnnCell, sets: Sets, targets: Ints, branch: zonotope.Branch
) -> tuple[Array, Array, Array]:
    """For each child (e, i) of a branch, whose key is targets[e, i]: the readout's slack and
    margin (readout's bounds, (10, n) each) and |M (x - c)| over it in its key's set
    (zonotope_coordinates' bound, (10, n, H)). Containment needs sums of |M G_k| over the
    child's generators G_k, M its key's: taken as (M diag(slope)) moved, one product per parent
    for all ten children, each one rounding more than M (slope moved) (the gamma terms below
    count it). The readout first bounds its sums by the child's size per unit, and takes them
    as products only for the children that bound leaves unsure."""
    count, terms, size = branch.moved.shape
    every = terms + size  # the children's generators
    w_out = cell.weights.w_out
    diffs = w_out[:, None, :] - w_out[None]  # (10, 10, H): digit e's logit minus each rival's
    inverse = sets.inverses[targets]  # (10, n, H, H)
    flipped = inverse.transpose(1, 3, 0, 2)  # (n, H, 10, H): [i, h, e, r] = M_rh
    slopes = branch.slope.transpose(1, 2, 0)[..., None]  # (n, H, 10, 1)
    reach = np.empty((count, 10, size))
    group = max(1, _PRODUCT_FLOATS // (terms * 10 * size))
    right = np.empty((group, size, 10, size))
    for first in range(0, count, group):
        part = slice(first, first + group)
        take = len(range(count)[part])
        np.multiply(flipped[part], slopes[part], out=right[:take])
        product = branch.moved[part] @ right[:take].reshape(take, size, 10 * size)
        reach[part] = np.abs(product, out=product).sum(axis=1).reshape(take, 10, size)
    # the box generators: |M_ij box_j| summed over j
    reach = reach.transpose(1, 0, 2)
    absolute = np.abs(sets.inverses)[targets]  # (10, n, H, H)
    centres, bound = branch.centres, branch.size
    centre = sets.centres[targets]
    scale = np.abs(centres) + np.abs(centre) + bound
    boxed, scaled = np.moveaxis(absolute @ np.stack([branch.box, scale], axis=-1), -1, 0)
    reach += boxed
    # containment: zonotope_coordinates' terms, one rounding more in each product
    value = np.abs(np.einsum("enij,enj->eni", inverse, centres - centre))
    slop = interval.gamma64(size + every + 6) * scaled
    inside = interval.upper(value + reach + slop, size + every + 2)
    # readout: readout's terms (its gamma covers one rounding more by far), the sum of |d G_k|
    # over the generators bounded by |d| times their sum per unit (branch.size); where that
    # leaves a rival's slack at or below 0 it is taken exactly, as in readout
    spread = bound @ np.abs(diffs).transpose(0, 2, 1)  # (10, n, 10)
    slack, gap = _readout_slack(cell, diffs, branch, spread)
    digits, parents = np.nonzero(slack.min(axis=2) <= 0)
    if len(digits):
        spread[digits, parents] = _readout_reach(branch, diffs, digits, parents)
        slack, gap = _readout_slack(cell, diffs, branch, spread)
    return slack.min(axis=2), gap.min(axis=2), inside


def _readout_reach(branch: zonotope.Branch, diffs: Array, digits: Ints, parents: Ints) -> Array:
    """sum_k |d G_k| over the generators of children (digits[m], parents[m]), for every rival's
    logit difference d, (m, 10)."""
    rows = diffs[digits] * branch.slope[digits, parents][:, None, :]  # (m, 10, H)
    product = branch.moved[parents] @ rows.transpose(0, 2, 1)  # (m, g, 10)
    reach: Array = np.abs(product).sum(axis=1)
    reach += np.einsum("mkj,mj->mk", np.abs(diffs[digits]), branch.box[digits, parents])
    return reach


def _readout_slack(
    cell: RnnCell, diffs: Array, branch: zonotope.Branch, spread: Array
) -> tuple[Array, Array]:
    """The readout's slack and logit gap of each child over each rival (inf for the right
    digit), (10, n, 10) each, given spread >= sum_k |d G_k| over the child's generators."""
    w_out, b_out = cell.weights.w_out, cell.weights.b_out
    _, terms, size = branch.moved.shape
    every = terms + size
    centres, bound = branch.centres, branch.size
    bias = (b_out[:, None] - b_out[None])[:, None]  # (10, 1, 10)
    gap = centres @ diffs.transpose(0, 2, 1) + bias - spread
    magnitude = interval.upper(np.abs(centres) + bound, every + 1)
    own = magnitude @ np.abs(diffs).transpose(0, 2, 1) + np.abs(bias)
    gap = interval.down(gap - interval.gamma64(CHAIN * size + 8 + every) * own)
    logit_error = interval.upper(
        interval.gamma32(size + 1) * (magnitude @ np.abs(w_out).T + np.abs(b_out)), size + 1
    )  # (10, n, 10)
    own_error = np.take_along_axis(logit_error, np.arange(10)[:, None, None], axis=2)
    slack = gap - (logit_error + own_error + SOFTMAX_SLACK)
    right_digit = np.arange(10)[:, None, None] == np.arange(10)[None, None, :]
    return np.where(right_digit, np.inf, slack), np.where(right_digit, np.inf, gap)
