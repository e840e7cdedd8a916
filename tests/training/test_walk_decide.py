"""counter-post's reliable carry length is proved up to the run its scan found exact, by a
walked certificate (`python -m training decide --walk`); the run after it fails for real
(tests/core/test_decide.py), so K is decided exactly."""

from pathlib import Path

import pytest

from core.card import ModelCard
from core.weights import RnnWeights, weights_from_onnx
from training.walk_fit import fit_walk

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.slow
def test_counter_post_is_proved_up_to_its_scans_exact_run() -> None:
    card = ModelCard.model_validate_json((MODELS / "counter-post.json").read_text())
    exact = card.metrics.carry_scan.longest_exact_run
    weights = weights_from_onnx(MODELS / "counter-post.onnx")
    assert isinstance(weights, RnnWeights)
    found = fit_walk(weights, exact)
    assert not isinstance(found, str), found
    invariant, checked = found
    assert invariant.steps > 1
    assert checked.proved == exact
    assert checked.margin > 0
