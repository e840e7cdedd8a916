"""Zonotope images of a tanh RNN step, rounded outward: the tight enclosure of a few states.

A zonotope is c + G u over u in [-1, 1]^g (c (N, H), G (N, H, g)). Its image under one step
keeps the affine part exact (W G); only each tanh is relaxed, by two parallel lines over the
interval hull of its pre-activation (relax, below), and the rest - the relaxation's
width, the deployed float32 sum's rounding, the deployed tanh's error and this proof's own
float64 rounding - is a new generator per unit. Boxes wrap: a box's image is the hull of an
image whose unit sums |R| reach far above 1, so a box around one trajectory grows by that sum
per step although the trajectory's neighbours do not. The zonotope grows only as the map does.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core import interval
from core.interval import Array
from core.weights import RnnWeights

Ints = npt.NDArray[np.int64]


def relax(lo: Array, hi: Array, error: float) -> tuple[Array, Array, Array]:
    """Parallel lines around tanh on [lo, hi]: tanh(x) + (deployed error) lies in
    slope x + offset +- width for every x in the interval, every array elementwise.

    The slope is the chord's (any slope in [0, 1] is sound; the chord's band is narrower than
    the one of tanh's least slope on the interval, by far on a wide interval).
    g(x) = tanh(x) - slope x is concave for x >= 0 and convex for x <= 0, so on each part
    one extreme is at the part's ends and the other is bounded by g's tangent at the point
    where g' = 0 is computed (clamped into the part): a concave function lies below each of
    its tangents, a convex one above. tanh is odd, so an interval at or below 0 is relaxed as
    its mirror [-hi, -lo] (the same slope and width, the offset negated): every interval then
    has a concave part, and only those that straddle 0 a convex part too. Every value is
    bounded outward.
    """
    mirror = hi <= 0
    lo, hi = np.where(mirror, -hi, lo), np.where(mirror, -lo, hi)
    t_lo, t_hi = np.tanh(lo), np.tanh(hi)
    span = hi - lo
    wide = span > 2.0**-20
    chord = (t_hi - t_lo) / np.where(wide, span, 1.0)
    slope = np.clip(np.where(wide, chord, 1 - t_lo * t_lo), 0.0, 1.0)
    slope = np.where(slope < 2.0**-20, 0.0, slope)  # g' = 0 only far out: treat as flat
    turn = np.arctanh(np.sqrt(np.minimum(1 - slope, 1 - 2.0**-40)))  # g'(+-turn) = 0
    # the concave part [a, hi] (x >= 0): tanh at a is tanh at lo, or tanh(0) = 0 exactly
    a = np.maximum(lo, 0.0)
    high = _tangent(np.clip(turn, a, hi), slope, a, hi, +1.0)
    low = np.minimum(_g(a, slope, np.where(lo > 0, t_lo, 0.0))[0], _g(hi, slope, t_hi)[0])
    # the convex part [lo, 0] of the intervals that straddle 0
    cut = np.nonzero(lo < 0)
    if len(cut[0]):
        c, s, zero = lo[cut], slope[cut], np.zeros(len(cut[0]))
        low[cut] = np.minimum(low[cut], _tangent(np.clip(-turn[cut], c, zero), s, c, zero, -1.0))
        ends = np.maximum(_g(c, s, t_lo[cut])[1], _g(zero, s, zero)[1])
        high[cut] = np.maximum(high[cut], ends)
    offset = (low + high) / 2
    width = interval.up(interval.up((high - low) / 2) + interval.U64 * np.abs(offset) + error)
    return slope, np.where(mirror, -offset, offset), width


def _g(x: Array, slope: Array, t: Array) -> tuple[Array, Array]:
    """Bounds of tanh(x) - slope x, given t = numpy's tanh(x) (within TRANSCENDENTAL): two
    roundings."""
    value = t - slope * x
    slack = (interval.TRANSCENDENTAL + 4 * interval.U64) * (np.abs(t) + slope * np.abs(x))
    slack = slack + 2.0**-1000
    return value - slack, value + slack


def _tangent(p: Array, slope: Array, a: Array, b: Array, sign: float) -> Array:
    """sign = +1: an upper bound of g on [a, b] where g is concave, from its tangent at p in
    [a, b]; sign = -1: a lower bound where g is convex. g'(p) = 1 - tanh(p)^2 - slope is
    computed within 2^-45."""
    t = np.tanh(p)
    low, high = _g(p, slope, t)
    derivative = 1 - t * t - slope
    slack = 2.0**-45
    rise = np.maximum(derivative + slack, 0.0)  # g'(p) at most
    fall = np.maximum(-(derivative - slack), 0.0)  # -g'(p) at most
    if sign > 0:  # g(x) <= g(p) + g'(p) (x - p) <= g(p) + rise (b - p) + fall (p - a)
        return interval.up(
            interval.up(high + rise * interval.up(b - p)) + fall * interval.up(p - a)
        )
    # g(x) >= g(p) + g'(p) (x - p) >= g(p) - rise (p - a) - fall (b - p)
    return interval.down(interval.down(low - rise * interval.up(p - a)) - fall * interval.up(b - p))


def point(state: Array) -> tuple[Array, Array]:
    """One exact state (H,) as a zonotope with no generators: (1, H), (1, H, 0)."""
    return state[None].copy(), np.zeros((1, state.shape[0], 0))


def radius(generators: Array) -> Array:
    """An upper bound of |G u| per unit over u in [-1, 1]^g, (N, H)."""
    terms = generators.shape[-1]
    return interval.upper(np.abs(generators).sum(axis=-1), terms)


def hull(centres: Array, generators: Array) -> tuple[Array, Array]:
    """The box (lo, hi) holding each zonotope, outward."""
    reach = radius(generators)
    return interval.down(centres - reach), interval.up(centres + reach)


def image(
    weights: RnnWeights,
    centres: Array,
    generators: Array,
    digits: Ints,
    error: float,
) -> tuple[Array, Array]:
    """Each zonotope (N) read with its digit (N,): a zonotope that holds every state the
    deployed step can reach from it, with H generators more."""
    w = weights
    size = w.hidden_size
    shift = (w.w_ih.T + (w.b_ih + w.b_hh))[digits]  # (N, H), float64: covered below
    shift_size = (np.abs(w.w_ih.T) + np.abs(w.b_ih) + np.abs(w.b_hh))[digits]
    magnitude = interval.upper(np.abs(centres) + radius(generators), 1)
    weight_size = interval.upper(magnitude @ np.abs(w.w_hh).T, size)  # sum |W h| terms
    pre = centres @ w.w_hh.T + shift
    moved = w.w_hh @ generators  # (..., H, g): once for zonotopes that share generators
    # the deployed float32 sum (H products and 3 shift terms, any order), and this proof's
    # float64 ones: W c and the shift (H + 2 terms), W G (H), the shift's own two additions
    noise = interval.gamma32(size + 3) * (weight_size + shift_size)
    noise = noise + interval.gamma64(size + 4) * (weight_size + shift_size)
    noise = interval.upper(noise + 3 * interval.U64 * shift_size, 4)
    reach = interval.upper(radius(moved) + noise, 2)
    slope, offset, width = relax(interval.down(pre - reach), interval.up(pre + reach), error)
    # tanh lies in slope (pre + moved u + n) + offset +- width, |n| <= noise
    centre = slope * pre + offset
    mapped = slope[..., None] * moved
    rounding = 2 * interval.U64 * (np.abs(slope * pre) + np.abs(offset)) + interval.U64 * (
        np.abs(mapped).sum(axis=-1)
    )
    box = interval.upper(width + slope * noise + rounding, mapped.shape[-1] + 4)
    fresh = np.eye(size)[None] * box[..., None]  # (N, H, H): one generator per unit
    return centre, np.concatenate([mapped, fresh], axis=-1)


def reduce(generators: Array, keep: int) -> Array:
    """At most keep + H generators: the `keep` largest (by their sum of |entries|) stay, and
    the rest are boxed into one generator per unit (the sum of their |entries| there), which
    holds every point they reach. Bounds the cost of a long run of steps."""
    count = generators.shape[-1]
    if count <= keep + generators.shape[-2]:
        return generators
    size = np.abs(generators).sum(axis=-2)  # (..., g)
    order = np.argsort(-size, axis=-1)
    ranked = np.take_along_axis(generators, order[..., None, :], axis=-1)
    rest = interval.upper(np.abs(ranked[..., keep:]).sum(axis=-1), count - keep)
    box = np.eye(generators.shape[-2]) * rest[..., None]
    return np.concatenate([ranked[..., :keep], box], axis=-1)


def branch(
    weights: RnnWeights, centres: Array, rows: Array, error: float, bound: Array | None = None
) -> "Branch":
    """Each zonotope (n) read with every digit: the same enclosure as `image`, laid out for
    batches and not yet assembled. Generators are rows here (rows (n, g, H): generator k of
    zonotope i is rows[i, k]), so W G of every zonotope is one matrix product, (n g, H) by
    (H, H). Child (e, i) is centre[e, i] + [slope[e, i] * moved[i]; diag(box[e, i])] u: the
    products slope * moved taken exactly (`children` rounds them, which box covers), so a
    child may be measured as (M diag(slope)) moved without being built.

    The arithmetic is `image`'s term for term (sums in another order are covered by the same
    gamma bounds), except that the children's sums of |slope * moved| are bounded from their
    parent's sum of |moved| instead of summed again: sum_k |fl(s m_k)| <= (1 + u) s sum_k |m_k|,
    which upper(., 1) covers. bound, when given, bounds each zonotope's sum of |generators| per
    unit (n, H) (its parent's Branch.size) and is not summed again.
    """
    w = weights
    count, terms, size = rows.shape
    shift = (w.w_ih.T + (w.b_ih + w.b_hh))[:, None, :]  # (10, 1, H)
    shift_size = (np.abs(w.w_ih.T) + np.abs(w.b_ih) + np.abs(w.b_hh))[:, None, :]
    if bound is None:
        bound = radius_rows(rows)
    magnitude = interval.upper(np.abs(centres) + bound, 1)  # (n, H)
    weight_size = interval.upper(magnitude @ np.abs(w.w_hh).T, size)
    pre = (centres @ w.w_hh.T)[None] + shift  # (10, n, H)
    moved = (rows.reshape(count * terms, size) @ w.w_hh.T).reshape(count, terms, size)
    noise = interval.gamma32(size + 3) * (weight_size + shift_size)
    noise = noise + interval.gamma64(size + 4) * (weight_size + shift_size)
    noise = interval.upper(noise + 3 * interval.U64 * shift_size, 4)
    spread = radius_rows(moved)  # (n, H)
    reach = interval.upper(spread + noise, 2)
    slope, offset, width = relax(interval.down(pre - reach), interval.up(pre + reach), error)
    centre = slope * pre + offset
    mapped_size = interval.upper(slope * spread, 1)  # >= sum_k |fl(slope moved_k)|
    rounding = 2 * interval.U64 * (np.abs(slope * pre) + np.abs(offset)) + interval.U64 * (
        mapped_size
    )
    box = interval.upper(width + slope * noise + rounding, terms + 4)
    return Branch(centre, slope, moved, box, interval.upper(mapped_size + box, 1))


@dataclass(frozen=True)
class Branch:
    """The ten children by digit of n zonotopes (see `branch`)."""

    centres: Array  # (10, n, H)
    slope: Array  # (10, n, H)
    moved: Array  # (n, g, H): W G of each parent, as rows
    box: Array  # (10, n, H): the new generator per unit
    size: Array  # (10, n, H): an upper bound of each child's sum of |generators| per unit

    def children(self, digits: Ints, parents: Ints) -> Array:
        """The generators (as rows) of the children (digits[m], parents[m]), (m, g + H, H)."""
        terms, size = self.moved.shape[1:]
        rows = np.empty((len(digits), terms + size, size))
        slope = self.slope[digits, parents]
        np.multiply(slope[:, None, :], self.moved[parents], out=rows[:, :terms])
        rows[:, terms:] = np.eye(size) * self.box[digits, parents][:, None, :]
        return rows


def radius_rows(rows: Array) -> Array:
    """`radius` of generators laid out as rows (n, g, H): an upper bound of |G u| per unit."""
    return interval.upper(np.abs(rows).sum(axis=1), rows.shape[1])
