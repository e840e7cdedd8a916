"""The copying phase's sets of core.decide's certificate: the keys (a complete suffix code of
the last digits read), the certificate file (Invariant), the sets with their checked inverses,
containment in them (Krawczyk) and the readout's bound on them. core.decide holds the argument.
"""

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core import interval
from core.cells import SOFTMAX_SLACK, RnnCell
from core.interval import Array

Ints = npt.NDArray[np.int64]
MAX_STEPS = 8  # the longest digit strings a walk follows from a set (its cost grows tenfold)
MAX_DEPTH = 12  # the deepest key a certificate may hold (its code still fits an int64)
# This proof's own float64 rounding in the copying step, bounded generously: every computed
# quantity is a chain of at most a few dot products of length H over terms whose magnitudes
# are summed in `size`; gamma64(8 H + 32) of that covers them all.
CHAIN = 8


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
    # the carrying set C = carrying_centre + carrying_shape [-1, 1]^H (core.carrying), entered
    # after `proved` nines: with it, runs of every length are covered (absent in older files)
    carrying_centre: Array | None = None  # (H,)
    carrying_shape: Array | None = None  # (H, H)
    # 0: the first copying states must lie in their keys' sets; n > 0: the states that absorb
    # the carry are walked instead (`walk`, from their keys), for up to n digits (absent in
    # older files: 0)
    entry_steps: int = 0

    def codes(self) -> Ints:
        return uniform_keys(self.key_digits) if self.keys is None else self.keys

    def to_bytes(self) -> bytes:
        """The .npz file shipped beside the card (exact float64, no pickle)."""
        buffer = io.BytesIO()
        arrays: dict[str, npt.ArrayLike] = {
            "proved": np.int64(self.proved),
            "key_digits": np.int64(self.key_digits),
            "centres": self.centres,
            "shapes": self.shapes,
            "keys": self.codes(),
            "steps": np.int64(self.steps),
        }
        if self.entry_steps:
            arrays["entry_steps"] = np.int64(self.entry_steps)
        if self.carrying_centre is not None and self.carrying_shape is not None:
            arrays |= {
                "carrying_centre": self.carrying_centre,
                "carrying_shape": self.carrying_shape,
            }
        np.savez_compressed(buffer, allow_pickle=False, **arrays)
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
                entry_steps = int(data["entry_steps"]) if "entry_steps" in data.files else 0
                carry = (
                    (
                        np.asarray(data["carrying_centre"], dtype=np.float64),
                        np.asarray(data["carrying_shape"], dtype=np.float64),
                    )
                    if "carrying_centre" in data.files
                    else None
                )
        except (OSError, KeyError, ValueError) as exc:
            raise CertificateError(f"not a certificate file: {exc}") from None
        if not 1 <= key_digits <= MAX_DEPTH or proved < 0 or keys.ndim != 1:
            raise CertificateError(f"out of range: key_digits {key_digits}, proved {proved}")
        if not 1 <= steps <= MAX_STEPS:
            raise CertificateError(f"out of range: steps {steps} (1 to {MAX_STEPS})")
        if not 0 <= entry_steps <= MAX_STEPS:
            raise CertificateError(f"out of range: entry_steps {entry_steps} (0 to {MAX_STEPS})")
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
        if carry is None:
            return Invariant(
                proved, key_digits, centres, shapes, keys, steps, entry_steps=entry_steps
            )
        carry_centre, carry_shape = carry
        if not (
            carry_centre.shape == centres.shape[1:]
            and carry_shape.shape == shapes.shape[1:]
            and np.isfinite(carry_centre).all()
            and np.isfinite(carry_shape).all()
        ):
            raise CertificateError("the carrying set is not a finite set of the sets' units")
        return Invariant(
            proved, key_digits, centres, shapes, keys, steps, carry_centre, carry_shape, entry_steps
        )


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
    inverses, limit = checked_inverses(invariant.shapes)
    return Sets(invariant.centres, invariant.shapes, inverses, limit, keys, after)


def checked_inverses(shapes: Array) -> tuple[Array, Array]:
    """For parallelotopes with shape matrices A (S, H, H): M ~ A^-1 and the limit 1 - eps,
    rounded down, with eps >= ||I - M A||_inf: |M (x - c)|_inf <= limit puts x inside."""
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
    limit: Array = interval.down(1 - eps)
    return inverses, limit


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
                f"key {digit_name(inner)} has key {digit_name(int(keys[hit.max()]))} "
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
            f"key {digit_name(int(keys[key]))} read with digit {digit} leads to a key more "
            "than one digit deeper"
        )
    return result


def readout(cell: RnnCell, centres: Array, shapes: Array, right: Ints) -> tuple[Array, Array]:
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
    gap = interval.down(gap - interval.gamma64(CHAIN * size + 8 + terms) * own)
    logit_error = interval.upper(
        interval.gamma32(size + 1) * (magnitude @ np.abs(w_out).T + np.abs(b_out)), size + 1
    )  # (S, 10): float32 rounding of each logit
    rows = np.arange(count)
    slack = gap - (logit_error + logit_error[rows, right][:, None] + SOFTMAX_SLACK)
    slack[rows, right] = np.inf
    gap[rows, right] = np.inf
    return slack.min(axis=1), gap.min(axis=1)


def digit_name(key_code: int) -> str:
    return str(key_code)[1:]
