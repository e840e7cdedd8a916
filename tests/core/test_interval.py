"""Interval bounds hold the exact values: checked against exact rational and 50-digit arithmetic
and against onnxruntime's float32 RNN step, on random boxes (hypothesis)."""

from decimal import Decimal, getcontext
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core import interval
from core.activation import TanhProbe
from core.cells import RnnCell
from core.interval import Array
from core.weights import RnnWeights

getcontext().prec = 50
SEEDS = st.integers(0, 2**32 - 1)


def _box(rng: np.random.Generator, size: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    centre = rng.normal(size=size) * scale
    radius = rng.uniform(0, scale, size=size) * rng.integers(0, 2, size=size)  # some points
    return centre - radius, centre + radius


@settings(max_examples=60, deadline=None)
@given(SEEDS)
def test_affine_bounds_hold_the_exact_sum_at_every_corner(seed: int) -> None:
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(4, 6)) * 10 ** rng.uniform(-3, 3)
    lo, hi = _box(rng, 6, 10 ** rng.uniform(-6, 1))
    shift = rng.normal(size=4)
    low, high, _ = interval.affine(weight, lo, hi, shift, np.abs(shift), sum_terms=7)
    for _ in range(16):
        corner = np.where(rng.integers(0, 2, size=6) == 1, hi, lo)
        for unit in range(4):
            exact = sum(
                (Fraction(w) * Fraction(x) for w, x in zip(weight[unit], corner, strict=True)),
                Fraction(shift[unit]),
            )
            assert Fraction(low[unit]) <= exact <= Fraction(high[unit])


def _tanh(x: float) -> Decimal:
    """tanh to 50 digits: its series near 0 (where exp(2x) - 1 would cancel), else by exp."""
    if abs(x) < 1e-5:
        d = Decimal(x)
        return d - d**3 / 3 + 2 * d**5 / 15
    two = Decimal(2) * Decimal(x)
    if two > 200:
        return Decimal(1)
    if two < -200:
        return Decimal(-1)
    e = two.exp()
    return (e - 1) / (e + 1)


@settings(max_examples=60, deadline=None)
@given(st.floats(-30, 30, allow_nan=False), st.floats(0, 5, allow_nan=False))
def test_tanh_bounds_hold_the_exact_value_even_with_no_allowance(x: float, width: float) -> None:
    lo, hi = interval.tanh(np.array([x]), np.array([x + width]), error=0.0)
    assert Decimal(lo[0]) <= _tanh(x)
    assert _tanh(x + width) <= Decimal(hi[0])


@settings(max_examples=40, deadline=None)
@given(SEEDS)
def test_an_rnn_cell_image_holds_onnxruntime_float32_steps(seed: int) -> None:
    """Points in a box, one float32 RNN step each in onnxruntime's arithmetic: in the image."""
    rng = np.random.default_rng(seed)
    size = 16
    weights = RnnWeights(
        w_ih=rng.normal(size=(size, 10)) * 2,
        w_hh=rng.normal(size=(size, size)),
        b_ih=rng.normal(size=size),
        b_hh=rng.normal(size=size),
        w_out=rng.normal(size=(10, size)),
        b_out=rng.normal(size=10),
    )
    weights = RnnWeights(
        **{k: v.astype(np.float32).astype(np.float64) for k, v in vars(weights).items()}
    )
    lo, hi = _box(rng, size, 0.3)
    lo, hi = np.clip(lo, -1, 1), np.clip(hi, -1, 1)
    image_lo, image_hi = RnnCell(weights, 1e-5).image(lo[None], hi[None])  # (1, 10, H)
    points = rng.uniform(lo, hi, size=(64, size)).astype(np.float32)
    probe = TanhProbe()
    for digit in range(10):
        pre = (
            points @ weights.w_hh.T.astype(np.float32)
            + weights.w_ih[:, digit].astype(np.float32)
            + weights.b_ih.astype(np.float32)
            + weights.b_hh.astype(np.float32)
        )  # float32
        after = probe.tanh(pre.astype(np.float32)).astype(np.float64)
        assert np.all(image_lo[0, digit] <= after), digit
        assert np.all(after <= image_hi[0, digit]), digit


def _box_of(rng: np.random.Generator, size: int, low: float, high: float) -> tuple[Array, Array]:
    ends = np.sort(rng.uniform(low, high, size=(2, size)), axis=0)
    return ends[0], ends[1]


@settings(max_examples=60, deadline=None)
@given(SEEDS)
def test_mix_bounds_hold_the_exact_value_everywhere_in_the_boxes(seed: int) -> None:
    """(1 - z) a + z b in exact rationals, at corners and inside: within mix's bounds, which
    are no wider than the corners' hull plus rounding (z's two uses are not decoupled)."""
    rng = np.random.default_rng(seed)
    z, a, b = _box_of(rng, 6, -0.01, 1.01), _box_of(rng, 6, -1, 1), _box_of(rng, 6, -1, 1)
    low, high = interval.mix(*z, *a, *b)
    for _ in range(12):
        pick = [np.where(rng.integers(0, 2, 6) == 1, box[1], box[0]) for box in (z, a, b)]
        inside = [rng.uniform(box[0], box[1]) for box in (z, a, b)]
        for zz, aa, bb in (pick, inside):
            for unit in range(6):
                exact = (1 - Fraction(zz[unit])) * Fraction(aa[unit]) + Fraction(
                    zz[unit]
                ) * Fraction(bb[unit])
                assert Fraction(low[unit]) <= exact <= Fraction(high[unit])
    independent = interval.add(
        *interval.product(*interval.add(np.ones(6), np.ones(6), -z[1], -z[0]), *a),
        *interval.product(*z, *b),
    )
    assert np.all(high - low <= independent[1] - independent[0] + 1e-6)


@settings(max_examples=60, deadline=None)
@given(SEEDS)
def test_mix_bounds_hold_float32_arithmetic_on_single_points(seed: int) -> None:
    """Point boxes leave only the rounding: float32's (1 - z) a + z b, as onnxruntime's GRU
    computes it (either sum order), is inside."""
    rng = np.random.default_rng(seed)
    z, a, b = (rng.uniform(lo, 1, size=256).astype(np.float32) for lo in (0, -1, -1))
    low, high = interval.mix(*(v.astype(np.float64) for v in (z, z, a, a, b, b)))
    one = np.float32(1)
    for deployed in (
        (one - z) * a + z * b,
        z * b + (one - z) * a,
    ):
        value = deployed.astype(np.float64)
        assert np.all((low <= value) & (value <= high))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False), min_size=1, max_size=40))
def test_up_and_down_move_at_least_to_the_next_float(values: list[float]) -> None:
    """A rounded result's true value lies within half an ulp: up and down must pass it, at
    every magnitude (subnormals, zero, powers of two, the largest floats, infinities)."""
    x = np.asarray([*values, 0.0, -0.0, 5e-324, -5e-324, 2.0**-1022, 1.0, -(2.0**60), 1.7e308])
    with np.errstate(over="ignore"):  # the largest floats step to infinity
        above, below = np.nextafter(x, np.inf), np.nextafter(x, -np.inf)
    assert np.all(interval.up(x) >= above)
    assert np.all(interval.down(x) <= below)
    finite = np.isfinite(x)
    assert np.all(interval.up(x)[finite] > x[finite])
    assert np.all(interval.down(x)[finite] < x[finite])
