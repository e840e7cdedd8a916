"""core.dynamics on the shipped models and on the hand-built exact counter: the carry chain,
the fixed points of the map 'read a 9', and carry_attractor."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.card import ModelCard
from core.carry_map import state_size, step_function
from core.certificate import cell_of
from core.dynamics import analyse, carry_attractor, carry_chain
from core.fixed_points import fixed_points
from core.weights import GruWeights, LstmWeights, RnnWeights, recurrent_weights_from_onnx
from tests.training.hand_counter import CARRY, hand_counter

MODELS = Path(__file__).resolve().parents[2] / "models"


def _card(name: str) -> ModelCard:
    return ModelCard.model_validate_json((MODELS / f"{name}.json").read_text())


def _weights(name: str) -> RnnWeights:
    weights = recurrent_weights_from_onnx(MODELS / f"{name}.onnx")
    assert isinstance(weights, RnnWeights)
    return weights


def test_the_certified_counter_has_a_carry_attractor() -> None:
    dynamics = analyse(_weights("counter"))
    assert _card("counter").metrics.certificate.certified
    assert dynamics.carry_attractor
    assert dynamics.predicted_exact_run is None
    point = dynamics.attractor
    assert point is not None
    assert point.stable
    assert point.readout == 0
    # the chain settles on it: the last states do not move
    assert np.max(np.abs(dynamics.chain.states[-1] - point.state)) < 1e-6


def test_the_post_counter_s_chain_is_a_transient_lost_where_the_scan_fails() -> None:
    dynamics = analyse(_weights("counter-post"))
    scan = _card("counter-post").metrics.carry_scan
    assert not dynamics.carry_attractor
    assert not any(p.stable and p.carries for p in dynamics.nine_points)
    assert dynamics.predicted_exact_run == scan.longest_exact_run
    assert dynamics.chain.lost_at == scan.failing_runs[0][0]
    # every margin up to the loss is positive, and the margin there is not
    margin = dynamics.chain.margin
    assert np.all(margin[: dynamics.chain.lost_at] > 0)
    assert margin[dynamics.chain.lost_at] < 0


def test_the_chain_is_the_model_reading_nines() -> None:
    weights = _weights("counter-post")
    chain = carry_chain(weights, 8)
    step = step_function(weights)
    state = np.zeros((1, weights.hidden_size))
    for j in range(1, 9):
        state = step(state, 9)
        np.testing.assert_allclose(chain.states[j], state[0])
        # the output margin is 0's logit minus the best other logit at that state
        logits = weights.w_out @ state[0] + weights.b_out
        assert chain.output_margin[j] == pytest.approx(logits[0] - np.max(logits[1:]))


def test_fixed_points_are_fixed_and_their_stability_is_the_jacobian_s() -> None:
    weights = _weights("counter")
    step = step_function(weights)
    points = fixed_points(weights, 9)
    assert {p.readout for p in points if p.stable} == {0, 9}  # carry on and carry off
    for point in points:
        np.testing.assert_allclose(step(point.state[None], 9)[0], point.state, atol=1e-9)
        # a stable point pulls a nearby state in; the largest |eigenvalue| says how fast
        if point.stable:
            near = point.state + 1e-4 * np.ones_like(point.state)
            for _ in range(50):
                near = step(near[None], 9)[0]
            assert np.max(np.abs(near - point.state)) < 1e-6


def test_the_hand_counter_carries_for_ever_and_a_leaky_one_does_not() -> None:
    exact = hand_counter()
    assert carry_attractor(exact)
    assert analyse(exact).predicted_exact_run is None
    # Shift the carry unit's threshold: a 9 read with the carry on now switches it off.
    bias = exact.b_ih.copy()
    bias[CARRY] = -bias[CARRY]
    leaky = replace(exact, b_ih=bias)
    assert not carry_attractor(leaky)
    dynamics = analyse(leaky)
    assert dynamics.predicted_exact_run == 0  # right for 8 + 1, wrong for 9 + 1
    assert dynamics.chain.lost_at == 1


def test_the_service_s_quick_check_agrees_with_the_full_analysis() -> None:
    for name in ("counter", "counter-post"):
        weights = _weights(name)
        assert carry_attractor(weights) == analyse(weights).carry_attractor


@pytest.mark.parametrize("kind", [RnnWeights, GruWeights, LstmWeights])
def test_the_step_is_inside_the_certificate_s_image_of_a_point(
    kind: type[RnnWeights] | type[GruWeights] | type[LstmWeights],
) -> None:
    """The float64 step of each cell agrees with core.cells, which the certificate (and the
    exported graph's arithmetic) is checked against: a point's image box holds it."""
    rng = np.random.default_rng(3)
    size, gates = 6, len(kind.GATES)
    weights = kind(
        w_ih=rng.normal(size=(gates * size, 10)),
        w_hh=rng.normal(size=(gates * size, size)) / 2,
        b_ih=rng.normal(size=gates * size),
        b_hh=rng.normal(size=gates * size),
        w_out=rng.normal(size=(10, size)),
        b_out=rng.normal(size=10),
    )
    states = rng.uniform(-1, 1, (20, state_size(weights)))
    lo, hi = cell_of(weights, 1e-6).image(states, states)  # (20, 10, S)
    step = step_function(weights)
    for digit in range(10):
        image = step(states, digit)
        assert np.all(lo[:, digit] <= image + 1e-9)
        assert np.all(image <= hi[:, digit] + 1e-9)
        assert np.max(hi[:, digit] - lo[:, digit]) < 1e-3  # and the box is tight
