"""Zonotope images of a tanh RNN step: the relaxation holds tanh on its whole interval, and
an image holds the step's image of every point of the zonotope it came from."""

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core import zonotope
from core.weights import RnnWeights, weights_from_onnx

MODELS = Path(__file__).resolve().parents[2] / "models"


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-30, 30, allow_nan=False),
    st.floats(0, 40, allow_nan=False),
    st.floats(0, 1e-3, allow_nan=False),
)
def test_the_band_holds_tanh_everywhere_on_the_interval(
    start: float, span: float, error: float
) -> None:
    lo, hi = np.array([start]), np.array([start + span])
    slope, offset, width = zonotope.relax(lo, hi, error)
    x = np.linspace(lo[0], hi[0], 4001)
    # tanh plus or minus the deployed error stays in the band at every point
    deviation = np.abs(np.tanh(x) - slope[0] * x - offset[0]) + error
    assert np.all(deviation <= width[0])


def test_the_band_is_narrow_on_a_narrow_interval() -> None:
    """Over an interval of width w tanh's band is of order w^2 (a band as wide as the
    interval would make every step's enclosure grow)."""
    lo = np.linspace(-3, 3, 61)
    *_, width = zonotope.relax(lo, lo + 1e-3, 0.0)
    assert np.all(width <= 1e-6)


def test_an_image_holds_every_points_image() -> None:
    weights = weights_from_onnx(MODELS / "counter-post.onnx")
    assert isinstance(weights, RnnWeights)
    rng = np.random.default_rng(0)
    size = weights.hidden_size
    centres = rng.uniform(-0.8, 0.8, (5, size))
    generators = rng.normal(0, 0.02, (5, size, 24))
    digits = np.arange(5)
    image, spread = zonotope.image(weights, centres, generators, digits, 1e-5)
    shift = weights.w_ih.T + weights.b_ih + weights.b_hh
    u = rng.choice([-1.0, 1.0], (2000, 24)) * rng.uniform(0.9, 1, (2000, 24))
    reach = np.abs(spread).sum(axis=-1)
    for n in range(5):
        points = centres[n] + u @ generators[n].T
        moved = np.tanh(points @ weights.w_hh.T + shift[digits[n]])
        assert np.all(np.abs(moved - image[n]) <= reach[n])
