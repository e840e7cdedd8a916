"""A certificate that a tanh RNN's reliable carry length is at least K, checked in one pass.

Adding one reads digits least significant first, with a carry that starts at 1. An input whose
trailing run is j <= K nines goes through three phases:

- carrying: the state after i <= j nines is one point of one trajectory from the zero state,
  enclosed with its rounding and activation errors in a zonotope (core.zonotope: a box around
  it would grow by the row sums of |R| per nine, the zonotope only as the map does); the right
  digit is 0;
- absorbed: the digit d in 0-8 after the nines, read with carry 1; right digit d + 1. Again a
  zonotope, one per (j, d);
- copying: every later digit e (leading zeros and the extra zero step are digit 0) is read
  with carry 0; right digit e. These states are covered by an invariant: one parallelotope
  P_s = c_s + A_s [-1, 1]^H per key s, a suffix of the digits read (zeros before the start).
  Keys may differ in depth: the key set is a complete suffix code (every history has exactly
  one key among its suffixes), and a key read with a digit leads to a key at most one digit
  deeper, so the key after s and e is determined by s and e alone. The check proves: each
  state right after an absorbed one lies in its key's P; the image of every P_s under every
  digit e lies in P_(the key of s e); on every P_s its last digit wins everywhere. By
  induction every copying state at any length lies in its key's P, so every output digit of
  every input with a run of at most K nines is right.

  When one step is not enough (the network forgets its past only over a few digits, so a
  set's one-step image pokes out of its successor's even where the states do not), a
  certificate with steps > 1 is checked by `walk` instead: from every P_s, every digit string
  is followed as a zonotope one digit at a time, the digit just read must win at every node,
  and a node is a leaf once it lies in the set of its own key; a string still outside after
  `steps` digits fails. A copying state in its key's set is then followed by right answers up
  to a leaf, where it is in a set again, so the same induction covers every length.

  The states just after a carry can lie apart from the later copying states for a few digits,
  and sets wide enough to hold both may read wrong. A certificate with entry_steps > 0 then
  does not ask the first copying states to lie in the sets: each absorbed state (and, with a
  carrying set, each of its images under d) is walked like a set, every digit string from it
  followed until it lies in its key's set, for up to entry_steps digits, every digit read on
  the way sure to win. Every copying state after a carry is then either on such a walk (read
  right) or past its leaf, inside a set, where the sets' own check takes over.

Every run longer than K: a certificate may carry a carrying set C (core.carrying), a
parallelotope entered by the chain after K nines (Z_K inside C) and mapped into itself by
reading a 9. Then the state after any j >= K nines lies in C (induction on j), digit 0 wins on
C, C read with d in 0-8 reads d + 1, and those images read with any e lie in the copying set
of the key of '9...9 d e' (every key at most K + 2 digits deep, so all long runs share it):
the copying induction above takes over, and every input of every length is right. The check
then says "unbounded".

The image of P_s is exact in its affine part (W A_s u); each tanh is relaxed over the interval
hull of its pre-activation by two parallel lines (the chord's slope, core.zonotope.relax),
and the rest (the relaxation's width, float32 rounding of the deployed sums, the deployed
tanh's error, this proof's float64 rounding) is a box added on top. Containment never trusts a
float inverse: with M ~ A^-1 and eps >= ||I - M A||_inf, a point x lies in P whenever
|M (x - c)|_inf <= 1 - eps (Krawczyk).

The certificate holds only the sets (c_s, A_s), K, steps and the carrying set (the walk's tree
and the chain are re-derived);
the search that finds them is in training.decide. Pure numpy, no torch: the service runs
`check` at load.
"""

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from core import carrying, interval, zonotope
from core.cells import RnnCell
from core.codec import add_one
from core.copying import (
    CHAIN,
    MAX_DEPTH,
    CertificateError,
    Ints,
    Invariant,
    Sets,
    coordinates,
    digit_name,
    key_index,
    readout,
    sets_of,
)
from core.interval import Array
from core.walk import Roots, Walker, roots_of, walk
from core.weights import RnnWeights
from core.zonotope import relax

METHOD = (
    "zonotopes around the trajectory while carrying and where the carry is absorbed; copying "
    "states in one parallelotope per key (the last digits read), each mapped into its successor's"
)
WALK_METHOD = (
    "zonotopes around the trajectory while carrying and where the carry is absorbed; copying "
    "states in one parallelotope per key (the last digits read), every digit string from each "
    "followed as a zonotope until it lies in its key's set"
)
ENTRY_METHOD = "; the states that absorb the carry followed the same way until they lie in a set"
_ZERO = np.zeros(1, dtype=np.int64)  # the right digit while carrying


@dataclass(frozen=True)
class Checked:
    """What the check established."""

    # K: every input whose trailing run is at most K nines is right; "unbounded": every input
    proved: int | Literal["unbounded"]
    margin: float  # the least lower bound of the right digit's logit gap over every set
    worst_containment: float  # the largest |M (x - c)|_inf + eps met: below 1 by this much


def _inside(sets: Sets, keys: Ints, lo: Array, hi: Array) -> Array:
    """The largest coordinate minus the set's limit, (N,): every entry must be <= 0."""
    result: Array = coordinates(sets, keys, lo, hi).max(axis=1) - sets.limit[keys]
    return result


def step_coordinates(cell: RnnCell, sets: Sets) -> Array:
    """For every key s and digit e, the image of P_s under e measured in P_(s e): an upper
    bound of |M (x - c)| over the image per coordinate, (S, 10, H)."""
    w = cell.weights
    size = sets.centres.shape[1]
    shift = w.w_ih.T + (w.b_ih + w.b_hh)  # (10, H)
    shift_size = np.abs(w.w_ih.T) + np.abs(w.b_ih) + np.abs(w.b_hh)
    weight = w.w_hh
    generators = weight @ sets.shapes  # (S, H, H): W A_s
    reach = np.abs(generators).sum(axis=2)  # (S, H): the affine part's radius per unit
    magnitude = np.abs(sets.centres) + np.abs(sets.shapes).sum(axis=2)  # |h| on P_s, (S, H)
    magnitude = interval.upper(magnitude, size)
    centre = sets.centres @ weight.T  # (S, H)
    own = magnitude @ np.abs(weight).T  # (S, H): sum |terms| of W h over P_s
    # the deployed float32 sum of H products and 3 shift terms, and this proof's float64 ones
    # (W c, W A, the shift's own sum), as a radius around the exact affine image
    deployed = interval.gamma32(size + 3) * (
        (magnitude @ np.abs(weight).T)[:, None, :] + shift_size[None]
    )
    proofs = interval.gamma64(CHAIN * size + 32) * (own[:, None, :] + shift_size[None])
    noise = interval.upper(deployed + proofs + 3 * interval.U64 * shift_size[None], size + 4)
    pre = centre[:, None, :] + shift[None]  # (S, 10, H)
    radius = interval.upper(reach[:, None, :] + noise, size + 1)
    slope, offset, width = relax(
        interval.down(pre - radius), interval.up(pre + radius), cell.activation_error
    )
    # image: slope * (pre + W A u + n) + offset +- width, |n| <= noise
    after = sets.after  # (S, 10)
    inverse = sets.inverses[after]  # (S, 10, H, H)
    target = sets.centres[after]  # (S, 10, H)
    centre_image = slope * pre + offset - target
    box = interval.up(width + slope * noise)  # (S, 10, H)
    mapped = inverse @ (slope[..., None] * generators[:, None])  # (S, 10, H, H)
    value = np.abs(np.einsum("seij,sej->sei", inverse, centre_image))
    bound = value + np.abs(mapped).sum(axis=3) + np.einsum("seij,sej->sei", np.abs(inverse), box)
    scale = np.abs(slope * pre) + np.abs(offset) + np.abs(target) + slope * reach[:, None, :]
    slop = interval.gamma64(CHAIN * size + 32) * np.einsum("seij,sej->sei", np.abs(inverse), scale)
    result: Array = interval.upper(bound + slop, 2 * size + 2)
    return result


def _absorbed(
    cell: RnnCell, proved: int, margins: list[float]
) -> Iterator[tuple[int, tuple[Array, Array]]]:
    """The states that absorb the carry after j = 0..proved nines, (9, H) and (9, H, g) by
    absorbing digit, each once the carrying states before it and it are checked to read right
    (the least logit gaps met are appended to margins). CertificateError when one is not."""
    weights, error = cell.weights, cell.activation_error
    absorbing = np.arange(9)
    for j, (centre, generators) in zip(range(proved + 1), carrying.chain(cell), strict=False):
        if j > 0:
            slack, gap = readout(cell, centre, generators, _ZERO)
            if slack[0] <= 0:
                raise CertificateError(
                    f"after {j} nines the carry's digit 0 is not sure to win (least logit gap "
                    f"{gap[0]:.3g})"
                )
            margins.append(float(gap[0]))
        absorbed = zonotope.image(weights, centre, generators, absorbing, error)  # (9, H)
        slack, gap = readout(cell, *absorbed, absorbing + 1)
        worst = int(slack.argmin())
        if slack[worst] <= 0:
            raise CertificateError(
                f"after {j} nines, the digit {worst} absorbing the carry is not sure to "
                f"give {worst + 1}"
            )
        margins.append(float(gap.min()))
        yield j, absorbed


def entries(cell: RnnCell, proved: int) -> tuple[Array, Array, Ints, float]:
    """Check the carrying and absorbed states of every run of up to `proved` nines (zonotopes
    around their one trajectory) and return the boxes of the first copying states after them,
    (N, H) each, their histories (N,: the value of the last MAX_DEPTH digits read, see
    key_index), ordered by (run, absorbing digit, next digit), and the least logit gap met.
    CertificateError when a carrying or absorbed state is not sure to read right."""
    unit = 10**MAX_DEPTH
    margins: list[float] = []
    entry_lo: list[Array] = []
    entry_hi: list[Array] = []
    entry_keys: list[int] = []
    for j, absorbed in _absorbed(cell, proved, margins):
        # the first copying state: each absorbed state read with every digit
        copy = zonotope.image(
            cell.weights,
            absorbed[0][:, None],
            absorbed[1][:, None],
            np.arange(10),
            cell.activation_error,
        )  # (9, 10, H)
        copy_lo, copy_hi = zonotope.hull(*copy)
        entry_lo.append(copy_lo.reshape(-1, cell.state_size))  # by (absorbing, next digit)
        entry_hi.append(copy_hi.reshape(-1, cell.state_size))
        nines = (10 ** min(j, MAX_DEPTH) - 1) * 100 % unit  # j nines, then two digits
        entry_keys += [(nines + d * 10 + e) % unit for d in range(9) for e in range(10)]
    keys = np.asarray(entry_keys, dtype=np.int64)
    return np.concatenate(entry_lo), np.concatenate(entry_hi), keys, min(margins)


def absorbed_roots(cell: RnnCell, proved: int, keys: Ints) -> tuple[Roots, float]:
    """The states that absorb the carry after every run of up to `proved` nines, checked as in
    `entries`, as roots of a walk from their keys (j nines, then d; `keys` the certificate's
    codes), and the least logit gap met."""
    unit = 10**MAX_DEPTH
    margins: list[float] = []
    centres: list[Array] = []
    generators: list[Array] = []
    histories: list[int] = []
    names: list[str] = []
    for j, (centre, shape) in _absorbed(cell, proved, margins):
        centres.append(centre)
        generators.append(shape)
        histories += [((10 ** min(j, MAX_DEPTH) - 1) * 10 + d) % unit for d in range(9)]
        names += [f"the state after {j} nines and {d}" for d in range(9)]
    return roots_of(keys, centres, generators, histories, names), min(margins)


def check(
    weights: RnnWeights, invariant: Invariant, tanh_error: float, walker: Walker = walk
) -> Checked:
    """Check the certificate on these weights in one pass; CertificateError says where it
    fails. tanh_error is the deployed tanh's absolute error the proof allows per step. walker:
    core.walk.walk, or one that walks the same trees on several cores (the search's)."""
    cell = RnnCell(weights, tanh_error)
    if invariant.centres.shape[1] != cell.state_size:
        raise CertificateError(
            f"the sets have {invariant.centres.shape[1]} units, the model {cell.state_size}"
        )
    sets = sets_of(invariant)
    proved = invariant.proved
    if invariant.entry_steps:
        # the states that absorb the carry, walked from their keys like the sets
        absorbed, entry_margin = absorbed_roots(cell, proved, sets.keys)
        entered = walker(cell, sets, invariant.entry_steps, roots=absorbed)
        if entered.failure is not None:
            raise CertificateError(entered.failure)
        entry_margin, worst_entry = min(entry_margin, entered.margin), entered.worst
    else:
        entry_lo, entry_hi, tails, entry_margin = entries(cell, proved)
        keys = key_index(sets.keys, tails)
        outside = _inside(sets, keys, entry_lo, entry_hi)
        if outside.max() > 0:
            j, rest = divmod(int(outside.argmax()), 90)
            raise CertificateError(
                f"the state after {j} nines, {rest // 10} and {rest % 10} is not inside the "
                f"set of key {digit_name(int(sets.keys[keys[outside.argmax()]]))}"
            )
        worst_entry = float(outside.max())
    if invariant.steps > 1:
        walked = walker(cell, sets, invariant.steps)
        if walked.failure is not None:
            raise CertificateError(walked.failure)
        worst_step, walk_margin = walked.worst, walked.margin
    else:
        walk_margin = math.inf
        bounds = step_coordinates(cell, sets)
        over = bounds.max(axis=2) - sets.limit[sets.after]  # (S, 10)
        if over.max() > 0:
            key, digit = np.unravel_index(int(over.argmax()), over.shape)
            raise CertificateError(
                f"the set of key {digit_name(int(sets.keys[key]))} read with digit {digit} "
                f"leaves the set of key {digit_name(int(sets.keys[sets.after[key, digit]]))} "
                f"(by {float(over.max()):.3g} of its size)"
            )
        worst_step = float(over.max())
    slack, gap = readout(cell, sets.centres, sets.shapes, sets.keys % 10)
    if slack.min() <= 0:
        loser = int(slack.argmin())
        raise CertificateError(
            f"in the set of key {digit_name(int(sets.keys[loser]))} digit "
            f"{int(sets.keys[loser]) % 10} is not sure to win "
            f"(worst logit gap {float(gap[loser]):.3g})"
        )
    margin = min(entry_margin, float(gap.min()), walk_margin)
    worst = max(worst_entry, worst_step)
    if invariant.carrying_centre is None or invariant.carrying_shape is None:
        return Checked(proved, math.floor(margin * 1e6) / 1e6, -worst)
    carry = carrying.Set(proved, invariant.carrying_centre, invariant.carrying_shape)
    closed = carrying.check(cell, carry, sets, invariant.entry_steps)
    margin, worst = min(margin, closed.margin), max(worst, closed.worst)
    return Checked("unbounded", math.floor(margin * 1e6) / 1e6, -worst)


def refutation(answer: Callable[[str], str], number: str) -> str | None:
    """What the served model answers for `number` + 1, when that is wrong (None when right).

    `answer` runs the served graph on one number and decodes its digits.
    """
    got = answer(number)
    return None if got == add_one(number) else got
