"""Interval arithmetic for the certificate, rounded outward in float64, with the deployed float32
rounding bounded on top.

The proof reasons about the float32 arithmetic onnxruntime runs, but computes in float64 with
numpy. Two kinds of rounding must therefore be covered:

- the deployed model's: a float32 sum of n products is off by at most gamma32(n) * sum |terms|
  (any order, with or without FMA), and onnxruntime's tanh and sigmoid are off by at most the
  error bound the certificate assumes (the service measures it on the onnxruntime it runs);
- the proof's own: every float64 result here is moved outward, so a computed lower bound is
  never above the true one. A dot product of n terms in float64 is off by at most
  gamma64(n) * sum |terms|; a correctly rounded operation by half an ulp, which one nextafter
  covers; numpy's tanh and exp (glibc or SVML, a few ulps) by a relative 2^-48 here.

Arrays are float64; "boxes" are (lo, hi) pairs of the same shape, lo <= hi elementwise.
"""

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

U32 = 2.0**-24  # float32 unit roundoff
U64 = 2.0**-53  # float64 unit roundoff
# Relative error allowed for numpy's float64 transcendental functions (32 ulps: generous).
TRANSCENDENTAL = 2.0**-48
_TINY = 2.0**-1000  # absolute floor, for results near zero
# A float32 product or sum that underflows into the subnormals is off by at most half the
# smallest subnormal, whatever its size: an absolute floor on top of the relative bound.
UNDERFLOW32 = 2.0**-150


def gamma32(n: int) -> float:
    """Relative error bound of a float32 sum of n terms: |error| <= gamma * sum |terms|."""
    return n * U32 / (1 - n * U32)


def gamma64(n: int) -> float:
    """The same for float64: the proof's own dot products."""
    return n * U64 / (1 - n * U64)


# x +- |x| 2^-52 +- 2^-1074 is at least one ulp of x away from x (an ulp of a normal x is at
# most |x| 2^-52, of a subnormal 2^-1074, and both products and the sum round monotonically),
# so it rounds to the next float64 or beyond: what nextafter gives, a tenth of its cost.
_ULP = 2.0**-52
_SUBNORMAL = 2.0**-1074


def down(x: Array) -> Array:
    """At or below the next float64 below: a lower bound of the exact result of one rounded
    operation."""
    # past the largest float: -inf, as nextafter gives; +inf meets -inf (invalid) only when x
    # holds +inf, and a NaN stays NaN: nextafter's own answers
    with np.errstate(over="ignore", invalid="raise"):
        try:
            step = np.abs(x)
            step *= -_ULP
            step -= _SUBNORMAL
            step += x
        except FloatingPointError:
            return np.nextafter(x, -np.inf)
    return step


def up(x: Array) -> Array:
    """At or above the next float64 above."""
    with np.errstate(over="ignore", invalid="raise"):
        try:
            step = np.abs(x)
            step *= _ULP
            step += _SUBNORMAL
            step += x
        except FloatingPointError:
            return np.nextafter(x, np.inf)
    return step


def upper(x: Array, terms: int) -> Array:
    """An upper bound of a float64 sum of `terms` non-negative terms computed as x."""
    return up(x * (1 + 2 * gamma64(terms + 2)))


def centre_radius(lo: Array, hi: Array) -> tuple[Array, Array]:
    """c and r with [lo, hi] inside [c - r, c + r] exactly (r rounded up)."""
    centre = (lo + hi) / 2
    return centre, up(np.maximum(hi - centre, centre - lo))


def magnitude(lo: Array, hi: Array) -> Array:
    """max |x| over the box (exact)."""
    return np.maximum(np.abs(lo), np.abs(hi))


def affine(
    weight: Array, lo: Array, hi: Array, shift: Array, shift_size: Array, sum_terms: int
) -> tuple[Array, Array, Array]:
    """Bounds of W h + shift over the box, as float32 computes it, outward.

    weight (O, I); lo, hi (..., I); shift (..., O) the constant part (biases, the input
    column), shift_size (..., O) the sum of the absolute values of its float32 terms;
    sum_terms: how many float32 terms the deployed sum adds (I products plus the shift's).
    Returns (lo, hi, size) of shape (..., O): size bounds sum |terms|, for later steps' errors.
    """
    centre, radius = centre_radius(lo, hi)
    value = centre @ weight.T + shift  # (..., O)
    spread = np.abs(radius) @ np.abs(weight).T
    size = magnitude(lo, hi) @ np.abs(weight).T + shift_size  # sum |terms| of the float32 sum
    own = (np.abs(centre) + radius) @ np.abs(weight).T + np.abs(shift)  # this proof's sum
    inputs = weight.shape[1]
    widen = spread + gamma32(sum_terms) * size + 2 * gamma64(inputs + 3) * own
    widen = upper(widen, inputs + 3)
    return down(value - widen), up(value + widen), upper(size, inputs + 1)


def tanh(lo: Array, hi: Array, error: float) -> tuple[Array, Array]:
    """Bounds of the deployed tanh over [lo, hi]: tanh is increasing; `error` is the deployed
    implementation's absolute error bound."""
    return _monotone(np.tanh(lo), np.tanh(hi), error, -1.0, 1.0)


def sigmoid(lo: Array, hi: Array, error: float) -> tuple[Array, Array]:
    """Bounds of the deployed logistic sigmoid over [lo, hi] (increasing)."""
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x < -709: sigmoid is 0
        low = 1 / (1 + np.exp(-lo))
        high = 1 / (1 + np.exp(-hi))
    return _monotone(low, high, error, 0.0, 1.0)


def _monotone(
    low: Array, high: Array, error: float, floor: float, ceiling: float
) -> tuple[Array, Array]:
    slack_low = np.abs(low) * TRANSCENDENTAL + _TINY
    slack_high = np.abs(high) * TRANSCENDENTAL + _TINY
    lo = np.maximum(down(down(low - slack_low) - error), floor - error)
    hi = np.minimum(up(up(high + slack_high) + error), ceiling + error)
    return lo, hi


def product(a_lo: Array, a_hi: Array, b_lo: Array, b_hi: Array) -> tuple[Array, Array]:
    """Bounds of a * b over two boxes, elementwise (exact on boxes), plus float32's rounding
    of the product and float64's of the bounds.

    Rounding to nearest is monotone, so the deployed product is between the rounded extremes:
    each bound moves by its own magnitude's rounding. A box may be half-infinite (an LSTM's
    cell state): an infinite end times 0 is the limit of finite values times 0, which is 0.
    """
    with np.errstate(invalid="ignore"):
        corners = np.stack([a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi])
    corners = np.where(np.isnan(corners), 0.0, corners)
    low, high = corners.min(axis=0), corners.max(axis=0)
    return _rounded_ends(low, high)


def add(a_lo: Array, a_hi: Array, b_lo: Array, b_hi: Array) -> tuple[Array, Array]:
    """Bounds of a + b, plus float32's rounding of the sum (monotone, as for product)."""
    return _rounded_ends(a_lo + b_lo, a_hi + b_hi)


def _rounded_ends(low: Array, high: Array) -> tuple[Array, Array]:
    """[low, high] after one float32 rounding (each end off by U32 of itself, or by half the
    smallest subnormal), and one float64 rounding of each end, outward."""
    low = low - (U32 * np.abs(low) + UNDERFLOW32)
    high = high + (U32 * np.abs(high) + UNDERFLOW32)
    return down(down(low)), up(up(high))


def mix(
    z_lo: Array, z_hi: Array, a_lo: Array, a_hi: Array, b_lo: Array, b_hi: Array
) -> tuple[Array, Array]:
    """Bounds of (1 - z) * a + z * b over three boxes, elementwise, as float32 computes it
    (1 - z, both products and the sum each rounded, or fused), outward.

    The GRU's update. Exact on boxes: the expression is linear in each of z, a and b, so its
    extremes lie at the box's 8 corners; bounding the two products apart would lose that z
    appears in both (with z in [0, 1] and a, b in [0.9, 1], they give [0, 2], not [0.9, 1]).
    """
    corners = np.stack(
        [(1 - z) * a + z * b for z in (z_lo, z_hi) for a in (a_lo, a_hi) for b in (b_lo, b_hi)]
    )
    low, high = corners.min(axis=0), corners.max(axis=0)
    # float32: fl(fl(fl(1 - z) a) + fl(z b)) is off by <= gamma(3) (|1 - z| |a| + |z| |b|)
    terms = np.maximum(np.abs(1 - z_lo), np.abs(1 - z_hi)) * magnitude(a_lo, a_hi) + magnitude(
        z_lo, z_hi
    ) * magnitude(b_lo, b_hi)
    # this proof's float64 corners: 1 - z, two products and a sum, on the same terms
    spread = (gamma32(3) + gamma64(4)) * terms + 3 * UNDERFLOW32
    return _rounded(low, high, upper(spread, 2))


def _rounded(low: Array, high: Array, spread: Array) -> tuple[Array, Array]:
    """[low - spread, high + spread] rounded outward: each bound came from one float64
    operation, and the subtraction of the spread is another."""
    return down(down(low - spread)), up(up(high + spread))
