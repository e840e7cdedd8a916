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

The image of P_s is exact in its affine part (W A_s u); each tanh is relaxed over the interval
hull of its pre-activation by two parallel lines (the chord's slope, core.zonotope.relax),
and the rest (the relaxation's width, float32 rounding of the deployed sums, the deployed
tanh's error, this proof's float64 rounding) is a box added on top. Containment never trusts a
float inverse: with M ~ A^-1 and eps >= ||I - M A||_inf, a point x lies in P whenever
|M (x - c)|_inf <= 1 - eps (Krawczyk).

The certificate holds only the sets (c_s, A_s), K and steps (the walk's tree is re-derived);
the search that finds them is in training.decide. Pure numpy, no torch: the service runs
`check` at load.
"""

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core import interval, zonotope
from core.cells import SOFTMAX_SLACK, RnnCell
from core.codec import add_one
from core.interval import Array
from core.weights import RnnWeights
from core.zonotope import relax

Ints = npt.NDArray[np.int64]
METHOD = (
    "zonotopes around the trajectory while carrying and where the carry is absorbed; copying "
    "states in one parallelotope per key (the last digits read), each mapped into its successor's"
)
WALK_METHOD = (
    "zonotopes around the trajectory while carrying and where the carry is absorbed; copying "
    "states in one parallelotope per key (the last digits read), every digit string from each "
    "followed as a zonotope until it lies in its key's set"
)
# the carry chain's zonotope keeps this many generators exactly (the rest boxed), so a long run
# of nines costs the same per nine
CHAIN_GENERATORS = 32
MAX_STEPS = 8  # the longest digit strings a walk follows from a set (its cost grows tenfold)
MAX_DEPTH = 12  # the deepest key a certificate may hold (its code still fits an int64)
# This proof's own float64 rounding in the copying step, bounded generously: every computed
# quantity is a chain of at most a few dot products of length H over terms whose magnitudes
# are summed in `size`; gamma64(8 H + 32) of that covers them all.
_CHAIN = 8
_NINES = np.full(1, 9, dtype=np.int64)  # the digit read while carrying
_ZERO = np.zeros(1, dtype=np.int64)  # the right digit while carrying


class CertificateError(ValueError):
    """The certificate does not check on these weights: where, and why, in one line."""


def uniform_keys(depth: int) -> Ints:
    """Every key of `depth` digits, as codes in increasing order."""
    return np.arange(10**depth, 2 * 10**depth, dtype=np.int64)


def code(digits: str) -> int:
    """A key's code: its digits (least recent first) behind a leading 1, so that the
    depth survives leading zeros ("07" is 107)."""
    return int("1" + digits)


def depths(keys: Ints) -> Ints:
    """The number of digits of each key code."""
    powers = 10 ** np.arange(1, MAX_DEPTH + 2, dtype=np.int64)
    result: Ints = (keys[:, None] >= powers[None]).sum(axis=1)
    return result


@dataclass(frozen=True)
class Invariant:
    """The checked claim: runs of up to `proved` nines are right; the copying sets by key."""

    proved: int  # K
    key_digits: int  # the deepest key
    centres: Array  # (S, H)
    shapes: Array  # (S, H, H): P_s = centres[s] + shapes[s] @ [-1, 1]^H
    # the key codes (see `code`), increasing; None: every key of key_digits digits
    keys: Ints | None = None
    # how many digits a set's images may be followed before they must lie in their key's set
    # (1: each set's one-step images; more: the digit trees of `walk`)
    steps: int = 1

    def codes(self) -> Ints:
        return uniform_keys(self.key_digits) if self.keys is None else self.keys

    def to_bytes(self) -> bytes:
        """The .npz file shipped beside the card (exact float64, no pickle)."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            proved=np.int64(self.proved),
            key_digits=np.int64(self.key_digits),
            centres=self.centres,
            shapes=self.shapes,
            keys=self.codes(),
            steps=np.int64(self.steps),
        )
        return buffer.getvalue()

    @staticmethod
    def from_bytes(blob: bytes) -> "Invariant":
        """Read a certificate file; CertificateError when it is malformed."""
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as data:
                proved, key_digits = int(data["proved"]), int(data["key_digits"])
                centres = np.asarray(data["centres"], dtype=np.float64)
                shapes = np.asarray(data["shapes"], dtype=np.float64)
                keys = (
                    np.asarray(data["keys"], dtype=np.int64)
                    if "keys" in data.files
                    else uniform_keys(min(max(key_digits, 1), 4))
                )
                steps = int(data["steps"]) if "steps" in data.files else 1
        except (OSError, KeyError, ValueError) as exc:
            raise CertificateError(f"not a certificate file: {exc}") from None
        if not 1 <= key_digits <= MAX_DEPTH or proved < 0 or keys.ndim != 1:
            raise CertificateError(f"out of range: key_digits {key_digits}, proved {proved}")
        if not 1 <= steps <= MAX_STEPS:
            raise CertificateError(f"out of range: steps {steps} (1 to {MAX_STEPS})")
        count = len(keys)
        if (
            centres.ndim != 2
            or centres.shape[0] != count
            or shapes.shape != (count, centres.shape[1], centres.shape[1])
        ):
            raise CertificateError(
                f"shapes {centres.shape} and {shapes.shape} do not fit {count} keys"
            )
        if not (np.isfinite(centres).all() and np.isfinite(shapes).all()):
            raise CertificateError("the sets hold a NaN or an infinity")
        return Invariant(proved, key_digits, centres, shapes, keys, steps)


@dataclass(frozen=True)
class Checked:
    """What the check established."""

    proved: int  # K: every input whose trailing run is at most K nines is right
    margin: float  # the least lower bound of the right digit's logit gap over every set
    worst_containment: float  # the largest |M (x - c)|_inf + eps met: below 1 by this much


@dataclass(frozen=True)
class Sets:
    """The invariant's sets with their checked inverses."""

    centres: Array  # (S, H)
    shapes: Array  # (S, H, H)
    inverses: Array  # (S, H, H): M
    limit: Array  # (S,): 1 - eps, rounded down: |M (x - c)|_inf must stay at or below it
    keys: Ints  # (S,): the key codes, a complete suffix code
    after: Ints  # (S, 10): the key after reading each digit


def sets_of(invariant: Invariant) -> Sets:
    keys = invariant.codes()
    if len(keys) != len(invariant.centres):
        raise CertificateError(f"{len(keys)} keys for {len(invariant.centres)} sets")
    suffix_code(keys)
    after = successors(keys)
    shapes = invariant.shapes
    size = shapes.shape[-1]
    try:
        inverses: Array = np.asarray(np.linalg.inv(shapes), dtype=np.float64)
    except np.linalg.LinAlgError:
        raise CertificateError("a set is flat (its shape matrix is singular)") from None
    residual = np.eye(size) - inverses @ shapes
    slop = interval.gamma64(size + 2) * (np.abs(inverses) @ np.abs(shapes) + 1)
    eps = interval.upper((np.abs(residual) + slop).sum(axis=2).max(axis=1), size)
    if not np.all(eps < 0.5):
        raise CertificateError("a set's shape matrix is too ill-conditioned to check")
    limit = interval.down(1 - eps)
    return Sets(invariant.centres, shapes, inverses, limit, keys, after)


def find(keys: Ints, codes: Ints) -> Ints:
    """The index of each code among the (increasing) keys, -1 where it is not a key."""
    at = np.minimum(np.searchsorted(keys, codes), len(keys) - 1)
    found: Ints = np.where(keys[at] == codes, at, -1)
    return found


def key_index(keys: Ints, tails: Ints) -> Ints:
    """The key of each history, given as the value of its last MAX_DEPTH digits (zeros
    before the start), (N,): the one key that is a suffix of it."""
    result = np.full(len(tails), -1, dtype=np.int64)
    for depth in range(1, MAX_DEPTH + 1):
        unit = 10**depth
        hit = find(keys, unit + tails % unit)
        result = np.where(result < 0, hit, result)
    return result


def suffix_code(keys: Ints) -> Ints:
    """Check that the key codes are a complete suffix code (increasing, each of 1 to
    MAX_DEPTH digits, none a suffix of another, and every history has one among its
    suffixes); their depths. CertificateError when not."""
    if len(keys) == 0 or keys.min() < 10 or not np.all(np.diff(keys) > 0):
        raise CertificateError("the key codes are not increasing codes of at least one digit")
    depth = depths(keys)
    if depth.max() > MAX_DEPTH or np.any(keys >= 2 * 10**depth):
        raise CertificateError(f"a key code is not a key of 1 to {MAX_DEPTH} digits")
    value = keys - 10**depth
    for shorter in range(1, int(depth.max())):
        longer = depth > shorter
        unit = 10**shorter
        hit = find(keys, unit + value[longer] % unit)
        if np.any(hit >= 0):
            inner = int(keys[longer][int(np.argmax(hit >= 0))])
            raise CertificateError(
                f"key {_digit_name(inner)} has key {_digit_name(int(keys[hit.max()]))} "
                "as a suffix: the key of a history is not unique"
            )
    # a suffix-free code covers every history exactly when its Kraft sum is 1
    deepest = int(depth.max())
    if int((10 ** (deepest - depth)).sum()) != 10**deepest:
        raise CertificateError(
            "the keys do not cover every history (the suffix code is incomplete)"
        )
    return depth


def coordinates(sets: Sets, keys: Ints, lo: Array, hi: Array) -> Array:
    """|M (x - c)| over boxes (N, H) in the sets of their keys (N,), bounded above per
    coordinate, (N, H)."""
    centre, radius = interval.centre_radius(lo, hi)
    offset = centre - sets.centres[keys]
    inverse = sets.inverses[keys]
    size = lo.shape[-1]
    value = np.abs(np.einsum("nij,nj->ni", inverse, offset))
    spread = np.einsum("nij,nj->ni", np.abs(inverse), radius)
    slop = interval.gamma64(size + 4) * np.einsum(
        "nij,nj->ni", np.abs(inverse), np.abs(centre) + np.abs(sets.centres[keys]) + radius
    )
    bound: Array = interval.upper(value + spread + slop, size + 2)
    return bound


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
    proofs = interval.gamma64(_CHAIN * size + 32) * (own[:, None, :] + shift_size[None])
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
    slop = interval.gamma64(_CHAIN * size + 32) * np.einsum("seij,sej->sei", np.abs(inverse), scale)
    result: Array = interval.upper(bound + slop, 2 * size + 2)
    return result


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


# a walk's batch: at most this many parent nodes (their ten children's bounds are kept)
_BATCH = 512
# the products (M diag(slope)) moved are taken for parents in groups of at most this many
# float64s of output (they stay in cache while their |.| is summed)
_PRODUCT_FLOATS = 1 << 17


@dataclass
class _Frontier:
    """Open walk nodes at one level."""

    centres: Array  # (n, H)
    rows: Array  # (n, g, H): generators as rows (zonotope.branch)
    at: Ints  # (n,): each node's key
    start: Ints  # (n,): the key of the set it came from
    level: int  # digits read


def walk(cell: RnnCell, sets: Sets, longest: int, keep_going: bool = False) -> Walk:
    """From every set P_s, read every digit string w, one digit at a time, as a zonotope
    (core.zonotope): at every node the digit just read must win (readout), and the node is a
    leaf once its image lies in the set of its key (the key of s w); a node still outside
    after `longest` digits fails the walk. keep_going: walk every key even after a failure
    (the search's measure of where the sets must grow).

    Every start key's nodes are walked together, in batches of a bounded size taken depth
    first (the tree is the same whatever the order); a child is built only when it is not a
    leaf."""
    size = cell.state_size
    nodes, least, worst, margin = 0, math.inf, -math.inf, math.inf
    open_targets: list[Ints] = []
    open_coordinates: list[Array] = []
    failure: str | None = None
    every = np.arange(len(sets.keys))
    pending = [
        _Frontier(
            sets.centres, np.ascontiguousarray(sets.shapes.transpose(0, 2, 1)), every, every, 0
        )
    ]
    while pending and (failure is None or keep_going):
        node = pending.pop()
        if len(node.at) > _BATCH:
            pending += [_part(node, slice(i, i + _BATCH)) for i in range(0, len(node.at), _BATCH)]
            continue
        level = node.level + 1
        branch = zonotope.branch(cell.weights, node.centres, node.rows, cell.activation_error)
        count = len(node.at)
        nodes += 10 * count
        targets = sets.after[node.at].T  # (10, n)
        slack, gap, inside = _measure(cell, sets, targets, branch)
        least, margin = min(least, float(slack.min())), min(margin, float(gap.min()))
        starts = np.broadcast_to(node.start, (10, count))
        if slack.min() <= 0 and failure is None:
            digit, where = np.unravel_index(int(slack.argmin()), slack.shape)
            failure = (
                f"from the set of key {_digit_name(int(sets.keys[node.start[where]]))}, after "
                f"{level} digits, digit {digit} is not sure to win"
            )
        over = inside.max(axis=2) - sets.limit[targets]
        closed = over <= 0
        if closed.any():
            worst = max(worst, float(over[closed].max()))
        digits, parents = np.nonzero(~closed)
        if len(digits) == 0:
            continue
        if level == longest:
            open_targets.append(targets[digits, parents])
            open_coordinates.append(inside[digits, parents])
            if failure is None:
                origin = _digit_name(int(sets.keys[starts[digits, parents].min()]))
                failure = (
                    f"from the set of key {origin}, {len(digits)} digit strings of {longest} "
                    "still leave their sets"
                )
            continue
        pending.append(
            _Frontier(
                branch.centres[digits, parents],
                branch.children(digits, parents),
                targets[digits, parents],
                starts[digits, parents],
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
    )


def _part(node: _Frontier, part: slice) -> _Frontier:
    return _Frontier(
        node.centres[part], node.rows[part], node.at[part], node.start[part], node.level
    )


def _measure(
    cell: RnnCell, sets: Sets, targets: Ints, branch: zonotope.Branch
) -> tuple[Array, Array, Array]:
    """For each child (e, i) of a branch, whose key is targets[e, i]: the readout's slack and
    margin (_readout's bounds, (10, n) each) and |M (x - c)| over it in its key's set
    (zonotope_coordinates' bound, (10, n, H)). Both need sums of |L G_k| over the child's
    generators G_k, for L = the key's M and the digit's logit differences: taken as
    (L diag(slope)) moved, one product per parent for all ten children. Each product is one
    rounding more than L (slope moved) (the gamma terms below count it)."""
    w_out, b_out = cell.weights.w_out, cell.weights.b_out
    count, terms, size = branch.moved.shape
    every = terms + size  # the children's generators
    diffs = w_out[:, None, :] - w_out[None]  # (10, 10, H): digit e's logit minus each rival's
    rows = size + 10
    inverse = sets.inverses[targets]  # (10, n, H, H)
    flipped = inverse.transpose(1, 3, 0, 2)  # (n, H, 10, H): [i, h, e, r] = M_rh
    spread = diffs.transpose(2, 0, 1)[None]  # (1, H, 10, 10): [., h, e, k] = diff_ekh
    slopes = branch.slope.transpose(1, 2, 0)[..., None]  # (n, H, 10, 1)
    reach = np.empty((count, 10, rows))
    group = max(1, _PRODUCT_FLOATS // (terms * 10 * rows))
    right = np.empty((group, size, 10, rows))
    for first in range(0, count, group):
        part = slice(first, first + group)
        take = len(range(count)[part])
        np.multiply(flipped[part], slopes[part], out=right[:take, ..., :size])
        np.multiply(spread, slopes[part], out=right[:take, ..., size:])
        product = branch.moved[part] @ right[:take].reshape(take, size, 10 * rows)
        reach[part] = np.abs(product, out=product).sum(axis=1).reshape(take, 10, rows)
    # the box generators: |L_ij box_j| summed over j
    reach = reach.transpose(1, 0, 2)
    absolute = np.abs(sets.inverses)[targets]  # (10, n, H, H)
    centres, bound = branch.centres, branch.size
    centre = sets.centres[targets]
    scale = np.abs(centres) + np.abs(centre) + bound
    boxed, scaled = np.moveaxis(absolute @ np.stack([branch.box, scale], axis=-1), -1, 0)
    reach[..., :size] += boxed
    reach[..., size:] += np.einsum("ekj,enj->enk", np.abs(diffs), branch.box)
    # containment: zonotope_coordinates' terms, one rounding more in each product
    value = np.abs(np.einsum("enij,enj->eni", inverse, centres - centre))
    slop = interval.gamma64(size + every + 6) * scaled
    inside = interval.upper(value + reach[..., :size] + slop, size + every + 2)
    # readout: _readout's terms (its gamma covers one rounding more by far)
    diff = diffs[:, None]  # (10, 1, 10, H)
    bias = (b_out[:, None] - b_out[None])[:, None]  # (10, 1, 10)
    gap = np.einsum("enkh,enh->enk", np.broadcast_to(diff, (10, count, 10, size)), centres)
    gap = gap + bias - reach[..., size:]
    magnitude = interval.upper(np.abs(centres) + bound, every + 1)
    own = np.einsum("ekh,enh->enk", np.abs(diffs), magnitude) + np.abs(bias)
    gap = interval.down(gap - interval.gamma64(_CHAIN * size + 8 + every) * own)
    logit_error = interval.upper(
        interval.gamma32(size + 1) * (magnitude @ np.abs(w_out).T + np.abs(b_out)), size + 1
    )  # (10, n, 10)
    own_error = np.take_along_axis(logit_error, np.arange(10)[:, None, None], axis=2)
    slack = gap - (logit_error + own_error + SOFTMAX_SLACK)
    right_digit = np.arange(10)[:, None, None] == np.arange(10)[None, None, :]
    slack = np.where(right_digit, np.inf, slack)
    gap = np.where(right_digit, np.inf, gap)
    return slack.min(axis=2), gap.min(axis=2), inside


def successors(keys: Ints) -> Ints:
    """The key after reading each digit from each key, (S, 10): the key that is a suffix of
    the key followed by the digit. CertificateError when that key is deeper, so that older
    digits would decide it (the keys must be a complete suffix code)."""
    depth = depths(keys)
    value = (keys - 10**depth)[:, None] * 10 + np.arange(10)  # (S, 10), depth + 1 digits
    result = np.full(value.shape, -1, dtype=np.int64)
    for length in range(1, int(depth.max()) + 2):
        unit = 10**length
        hit = find(keys, (unit + value % unit).ravel()).reshape(value.shape)
        result = np.where((result < 0) & (length <= depth[:, None] + 1), hit, result)
    if np.any(result < 0):
        key, digit = np.argwhere(result < 0)[0]
        raise CertificateError(
            f"key {_digit_name(int(keys[key]))} read with digit {digit} leads to a key more "
            "than one digit deeper"
        )
    return result


def _readout(cell: RnnCell, centres: Array, shapes: Array, right: Ints) -> tuple[Array, Array]:
    """On every set centres[s] + shapes[s] [-1, 1]^m, the least (logit gap of digit right[s]
    over each rival, minus every rounding bound), (S,), and the least logit gap itself (the
    margin), (S,)."""
    w_out, b_out = cell.weights.w_out, cell.weights.b_out
    count, size = centres.shape
    terms = shapes.shape[-1]
    diff = w_out[right][:, None, :] - w_out[None]  # (S, 10, H), exact
    bias = b_out[right][:, None] - b_out[None]
    gap = (
        np.einsum("skh,sh->sk", diff, centres)
        + bias
        - np.abs(np.einsum("skh,shj->skj", diff, shapes)).sum(axis=2)
    )
    magnitude = interval.upper(np.abs(centres) + np.abs(shapes).sum(axis=2), terms + 1)
    own = np.einsum("skh,sh->sk", np.abs(diff), magnitude) + np.abs(bias)
    gap = interval.down(gap - interval.gamma64(_CHAIN * size + 8 + terms) * own)
    logit_error = interval.upper(
        interval.gamma32(size + 1) * (magnitude @ np.abs(w_out).T + np.abs(b_out)), size + 1
    )  # (S, 10): float32 rounding of each logit
    rows = np.arange(count)
    slack = gap - (logit_error + logit_error[rows, right][:, None] + SOFTMAX_SLACK)
    slack[rows, right] = np.inf
    gap[rows, right] = np.inf
    return slack.min(axis=1), gap.min(axis=1)


def _digit_name(key_code: int) -> str:
    return str(key_code)[1:]


def entries(cell: RnnCell, proved: int) -> tuple[Array, Array, Ints, float]:
    """Check the carrying and absorbed states of every run of up to `proved` nines (zonotopes
    around their one trajectory) and return the boxes of the first copying states after them,
    (N, H) each, their histories (N,: the value of the last MAX_DEPTH digits read, see
    key_index), ordered by (run, absorbing digit, next digit), and the least logit gap met.
    CertificateError when a carrying or absorbed state is not sure to read right."""
    unit = 10**MAX_DEPTH
    weights, error = cell.weights, cell.activation_error
    margins: list[float] = []
    # carrying: one zonotope per run of nines, reading 0; absorbed: its images under 0-8
    centre, generators = zonotope.point(cell.initial())
    entry_lo: list[Array] = []
    entry_hi: list[Array] = []
    entry_keys: list[int] = []
    absorbing = np.arange(9)
    for j in range(proved + 1):
        if j > 0:
            centre, generators = zonotope.image(weights, centre, generators, _NINES, error)
            generators = zonotope.reduce(generators, CHAIN_GENERATORS)
            slack, gap = _readout(cell, centre, generators, _ZERO)
            if slack[0] <= 0:
                raise CertificateError(
                    f"after {j} nines the carry's digit 0 is not sure to win (least logit gap "
                    f"{gap[0]:.3g})"
                )
            margins.append(float(gap[0]))
        absorbed = zonotope.image(weights, centre, generators, absorbing, error)  # (9, H)
        slack, gap = _readout(cell, *absorbed, absorbing + 1)
        worst = int(slack.argmin())
        if slack[worst] <= 0:
            raise CertificateError(
                f"after {j} nines, the digit {worst} absorbing the carry is not sure to "
                f"give {worst + 1}"
            )
        margins.append(float(gap.min()))
        # the first copying state: each absorbed state read with every digit
        copy = zonotope.image(
            weights, absorbed[0][:, None], absorbed[1][:, None], np.arange(10), error
        )  # (9, 10, H)
        copy_lo, copy_hi = zonotope.hull(*copy)
        entry_lo.append(copy_lo.reshape(-1, cell.state_size))  # by (absorbing, next digit)
        entry_hi.append(copy_hi.reshape(-1, cell.state_size))
        nines = (10 ** min(j, MAX_DEPTH) - 1) * 100 % unit  # j nines, then two digits
        entry_keys += [(nines + d * 10 + e) % unit for d in range(9) for e in range(10)]
    keys = np.asarray(entry_keys, dtype=np.int64)
    return np.concatenate(entry_lo), np.concatenate(entry_hi), keys, min(margins)


def check(weights: RnnWeights, invariant: Invariant, tanh_error: float) -> Checked:
    """Check the certificate on these weights in one pass; CertificateError says where it
    fails. tanh_error is the deployed tanh's absolute error the proof allows per step."""
    cell = RnnCell(weights, tanh_error)
    if invariant.centres.shape[1] != cell.state_size:
        raise CertificateError(
            f"the sets have {invariant.centres.shape[1]} units, the model {cell.state_size}"
        )
    sets = sets_of(invariant)
    proved = invariant.proved
    entry_lo, entry_hi, tails, entry_margin = entries(cell, proved)
    keys = key_index(sets.keys, tails)
    outside = _inside(sets, keys, entry_lo, entry_hi)
    worst_entry = int(outside.argmax())
    if outside[worst_entry] > 0:
        j, rest = divmod(worst_entry, 90)
        raise CertificateError(
            f"the state after {j} nines, {rest // 10} and {rest % 10} is not inside the set "
            f"of key {_digit_name(int(sets.keys[keys[worst_entry]]))}"
        )
    if invariant.steps > 1:
        walked = walk(cell, sets, invariant.steps)
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
                f"the set of key {_digit_name(int(sets.keys[key]))} read with digit {digit} "
                f"leaves the set of key {_digit_name(int(sets.keys[sets.after[key, digit]]))} "
                f"(by {float(over.max()):.3g} of its size)"
            )
        worst_step = float(over.max())
    slack, gap = _readout(cell, sets.centres, sets.shapes, sets.keys % 10)
    if slack.min() <= 0:
        loser = int(slack.argmin())
        raise CertificateError(
            f"in the set of key {_digit_name(int(sets.keys[loser]))} digit "
            f"{int(sets.keys[loser]) % 10} is not sure to win "
            f"(worst logit gap {float(gap[loser]):.3g})"
        )
    margin = min(entry_margin, float(gap.min()), walk_margin)
    worst = max(float(outside.max()), worst_step)
    return Checked(proved=proved, margin=math.floor(margin * 1e6) / 1e6, worst_containment=-worst)


def refutation(answer: Callable[[str], str], number: str) -> str | None:
    """What the served model answers for `number` + 1, when that is wrong (None when right).

    `answer` runs the served graph on one number and decodes its digits.
    """
    got = answer(number)
    return None if got == add_one(number) else got
