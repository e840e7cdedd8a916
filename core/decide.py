"""A certificate that a tanh RNN's reliable carry length is at least K, checked in one pass.

Adding one reads digits least significant first, with a carry that starts at 1. An input whose
trailing run is j <= K nines goes through three phases:

- carrying: the state after i <= j nines is one point of one trajectory from the zero state
  (a tight box: rounding only); the right digit is 0;
- absorbed: the digit d in 0-8 after the nines, read with carry 1; right digit d + 1. Again a
  tight box, one per (j, d);
- copying: every later digit e (leading zeros and the extra zero step are digit 0) is read
  with carry 0; right digit e. These states are covered by an invariant: one parallelotope
  P_s = c_s + A_s [-1, 1]^H per key s, the last `key_digits` digits read (zeros before the
  start). The check proves: each state right after an absorbed one lies in its key's P; the
  image of every P_s under every digit e lies in P_(s shifted by e); on every P_s digit s % 10
  wins everywhere. By induction every copying state at any length lies in its key's P, so
  every output digit of every input with a run of at most K nines is right.

The image of P_s is exact in its affine part (W A_s u); each tanh is relaxed over the interval
hull of its pre-activation by two parallel lines (slope the least derivative on the interval),
and the rest (the relaxation's width, float32 rounding of the deployed sums, the deployed
tanh's error, this proof's float64 rounding) is a box added on top. Containment never trusts a
float inverse: with M ~ A^-1 and eps >= ||I - M A||_inf, a point x lies in P whenever
|M (x - c)|_inf <= 1 - eps (Krawczyk).

The certificate holds only the sets (c_s, A_s) and K; the search that finds them is in
training.decide. Pure numpy, no torch: the service runs `check` at load.
"""

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core import interval
from core.cells import SOFTMAX_SLACK, RnnCell
from core.codec import add_one
from core.interval import Array
from core.weights import RnnWeights

Ints = npt.NDArray[np.int64]
METHOD = (
    "tight boxes while carrying and where the carry is absorbed; copying states in one "
    "parallelotope per key (the last digits read), each mapped into its successor's"
)
# This proof's own float64 rounding in the copying step, bounded generously: every computed
# quantity is a chain of at most a few dot products of length H over terms whose magnitudes
# are summed in `size`; gamma64(8 H + 32) of that covers them all.
_CHAIN = 8
_NINE = 9


class CertificateError(ValueError):
    """The certificate does not check on these weights: where, and why, in one line."""


@dataclass(frozen=True)
class Invariant:
    """The checked claim: runs of up to `proved` nines are right; the copying sets by key."""

    proved: int  # K
    key_digits: int
    centres: Array  # (10^k, H)
    shapes: Array  # (10^k, H, H): P_s = centres[s] + shapes[s] @ [-1, 1]^H

    def to_bytes(self) -> bytes:
        """The .npz file shipped beside the card (exact float64, no pickle)."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            proved=np.int64(self.proved),
            key_digits=np.int64(self.key_digits),
            centres=self.centres,
            shapes=self.shapes,
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
        except (OSError, KeyError, ValueError) as exc:
            raise CertificateError(f"not a certificate file: {exc}") from None
        if not 1 <= key_digits <= 4 or proved < 0:
            raise CertificateError(f"out of range: key_digits {key_digits}, proved {proved}")
        keys = 10**key_digits
        if (
            centres.ndim != 2
            or centres.shape[0] != keys
            or shapes.shape
            != (
                keys,
                centres.shape[1],
                centres.shape[1],
            )
        ):
            raise CertificateError(
                f"shapes {centres.shape} and {shapes.shape} do not fit {keys} keys"
            )
        if not (np.isfinite(centres).all() and np.isfinite(shapes).all()):
            raise CertificateError("the sets hold a NaN or an infinity")
        return Invariant(proved, key_digits, centres, shapes)


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


def sets_of(invariant: Invariant) -> Sets:
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
    return Sets(invariant.centres, shapes, inverses, limit)


def key_of(history: list[int], key_digits: int) -> int:
    """The key of a history (digits as read, least significant first): its last key_digits
    digits, the most recent last, zeros before the start."""
    padded = [0] * key_digits + history
    return int("".join(map(str, padded[-key_digits:])))


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


def _relax(lo: Array, hi: Array, error: float) -> tuple[Array, Array, Array]:
    """Parallel lines around tanh on [lo, hi]: tanh(x) + (deployed error) lies in
    slope x + offset +- width for every x in the interval, every array elementwise.

    The slope is at most tanh's least derivative on the interval (at an end: tanh' is
    unimodal), so tanh(x) - slope x is non-decreasing there and lies between its values at
    the ends, which are bounded outward.
    """
    t_lo, t_hi = np.tanh(lo), np.tanh(hi)
    slope = np.minimum(1 - t_lo * t_lo, 1 - t_hi * t_hi)
    slope = np.maximum(slope * (1 - 2.0**-30) - 2.0**-60, 0.0)  # below the true least slope
    slack = interval.TRANSCENDENTAL * (np.abs(t_lo) + np.abs(t_hi)) + 2.0**-1000
    low = t_lo - slope * lo
    high = t_hi - slope * hi
    slack = slack + 4 * interval.U64 * (
        np.abs(t_lo) + np.abs(t_hi) + slope * (np.abs(lo) + np.abs(hi))
    )
    low, high = low - slack, high + slack
    offset = (low + high) / 2
    width = interval.up(interval.up((high - low) / 2) + interval.U64 * np.abs(offset) + error)
    return slope, offset, width


def step_coordinates(cell: RnnCell, sets: Sets) -> Array:
    """For every key s and digit e, the image of P_s under e measured in P_(s e): an upper
    bound of |M (x - c)| over the image per coordinate, (S, 10, H)."""
    w = cell.weights
    count, size = sets.centres.shape
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
    slope, offset, width = _relax(
        interval.down(pre - radius), interval.up(pre + radius), cell.activation_error
    )
    # image: slope * (pre + W A u + n) + offset +- width, |n| <= noise
    after = successors(count)  # (S, 10)
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


def successors(count: int) -> Ints:
    """The key after reading each digit from each key, (S, 10)."""
    return (np.arange(count)[:, None] * 10 + np.arange(10)) % count


def _readout(cell: RnnCell, sets: Sets) -> tuple[Array, Array]:
    """On every P_s, the least (logit gap of digit s % 10 over each rival, minus every
    rounding bound), (S,), and the least logit gap itself (the margin), (S,)."""
    w_out, b_out = cell.weights.w_out, cell.weights.b_out
    count, size = sets.centres.shape
    right = np.arange(count) % 10
    diff = w_out[right][:, None, :] - w_out[None]  # (S, 10, H), exact
    bias = b_out[right][:, None] - b_out[None]
    gap = (
        np.einsum("skh,sh->sk", diff, sets.centres)
        + bias
        - np.abs(np.einsum("skh,shj->skj", diff, sets.shapes)).sum(axis=2)
    )
    magnitude = interval.upper(np.abs(sets.centres) + np.abs(sets.shapes).sum(axis=2), size)
    own = np.einsum("skh,sh->sk", np.abs(diff), magnitude) + np.abs(bias)
    gap = interval.down(gap - interval.gamma64(_CHAIN * size + 8) * own)
    logit_error = interval.upper(
        interval.gamma32(size + 1) * (magnitude @ np.abs(w_out).T + np.abs(b_out)), size + 1
    )  # (S, 10): float32 rounding of each logit
    rows = np.arange(count)
    slack = gap - (logit_error + logit_error[rows, right][:, None] + SOFTMAX_SLACK)
    slack[rows, right] = np.inf
    gap[rows, right] = np.inf
    return slack.min(axis=1), gap.min(axis=1)


def _digit_name(key: int, key_digits: int) -> str:
    return str(key).zfill(key_digits)


def entries(cell: RnnCell, proved: int, key_digits: int) -> tuple[Array, Array, Ints, float]:
    """Check the carrying and absorbed states of every run of up to `proved` nines (tight
    boxes) and return the boxes of the first copying states after them, (N, H) each, their
    keys (N,), ordered by (run, absorbing digit, next digit), and the least logit gap met.
    CertificateError when a carrying or absorbed state is not sure to read right."""
    k = key_digits
    margins: list[float] = []
    # carrying: one tight box per run of nines, reading 0; absorbed: its images under 0-8
    lo = hi = cell.initial()[None]
    entry_lo: list[Array] = []
    entry_hi: list[Array] = []
    entry_keys: list[int] = []
    for j in range(proved + 1):
        if j > 0:
            image_lo, image_hi = cell.image(lo, hi)
            lo, hi = image_lo[:, _NINE], image_hi[:, _NINE]
            readout = cell.readout(lo, hi, np.zeros(1, dtype=np.int64))
            if readout.slack[0] <= 0:
                raise CertificateError(
                    f"after {j} nines the carry's digit 0 is not sure to win (digit "
                    f"{int(readout.rival[0])} is within {readout.gap[0]:.3g})"
                )
            margins.append(float(readout.gap[0]))
        image_lo, image_hi = cell.image(lo, hi)  # (1, 10, H)
        absorbed_lo, absorbed_hi = image_lo[0, :9], image_hi[0, :9]
        readout = cell.readout(absorbed_lo, absorbed_hi, np.arange(1, 10))
        worst = int(readout.slack.argmin())
        if readout.slack[worst] <= 0:
            raise CertificateError(
                f"after {j} nines, the digit {worst} absorbing the carry is not sure to "
                f"give {worst + 1}"
            )
        margins.append(float(readout.gap.min()))
        # the first copying state: each absorbed state read with every digit
        copy_lo, copy_hi = cell.image(absorbed_lo, absorbed_hi)  # (9, 10, H)
        entry_lo.append(copy_lo.reshape(-1, cell.state_size))
        entry_hi.append(copy_hi.reshape(-1, cell.state_size))
        entry_keys += [key_of([9] * j + [d, e], k) for d in range(9) for e in range(10)]
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
    k, proved = invariant.key_digits, invariant.proved
    entry_lo, entry_hi, keys, entry_margin = entries(cell, proved, k)
    outside = _inside(sets, keys, entry_lo, entry_hi)
    worst_entry = int(outside.argmax())
    if outside[worst_entry] > 0:
        j, rest = divmod(worst_entry, 90)
        raise CertificateError(
            f"the state after {j} nines, {rest // 10} and {rest % 10} is not inside the set "
            f"of key {_digit_name(int(keys[worst_entry]), k)}"
        )
    bounds = step_coordinates(cell, sets)
    over = bounds.max(axis=2) - sets.limit[successors(len(sets.centres))]  # (S, 10)
    if over.max() > 0:
        key, digit = np.unravel_index(int(over.argmax()), over.shape)
        raise CertificateError(
            f"the set of key {_digit_name(int(key), k)} read with digit {digit} leaves the set "
            f"of key {_digit_name((int(key) * 10 + int(digit)) % 10**k, k)} (by "
            f"{float(over.max()):.3g} of its size)"
        )
    slack, gap = _readout(cell, sets)
    if slack.min() <= 0:
        loser = int(slack.argmin())
        raise CertificateError(
            f"in the set of key {_digit_name(loser, k)} digit {loser % 10} is not sure to win "
            f"(worst logit gap {float(gap[loser]):.3g})"
        )
    margin = min(entry_margin, float(gap.min()))
    worst = max(float(outside.max()), float(over.max()))
    return Checked(proved=proved, margin=math.floor(margin * 1e6) / 1e6, worst_containment=-worst)


def refutation(answer: Callable[[str], str], number: str) -> str | None:
    """What the served model answers for `number` + 1, when that is wrong (None when right).

    `answer` runs the served graph on one number and decodes its digits.
    """
    got = answer(number)
    return None if got == add_one(number) else got
