"""The shipped models: cards that validate, match their files, and say what was measured."""

import hashlib
from pathlib import Path

import pytest

from core.card import ModelCard

MODELS = Path(__file__).resolve().parents[2] / "models"


def _card(name: str) -> ModelCard:
    return ModelCard.model_validate_json((MODELS / f"{name}.json").read_text())


@pytest.mark.parametrize("name", ["counter", "counter-post"])
def test_card_matches_its_files(name: str) -> None:
    card = _card(name)
    onnx_file = MODELS / card.onnx_file
    assert card.name == name
    assert hashlib.sha256(onnx_file.read_bytes()).hexdigest() == card.sha256
    assert card.plots
    assert all((MODELS / plot).is_file() for plot in card.plots)
    assert card.frameworks.opset == 17
    assert card.metrics.carry_scanned_up_to >= 100_000
    assert card.metrics.carry_scan_engine.startswith("onnxruntime")


def test_default_model_is_certified_and_exact_at_every_tested_length() -> None:
    metrics = _card("counter").metrics
    assert metrics.val_accuracy == metrics.train_accuracy == 1.0
    assert all(a.correct == a.samples for a in metrics.accuracy_by_length)
    assert max(a.length for a in metrics.accuracy_by_length) >= 100_000
    assert metrics.carry_certified
    assert metrics.certificate.certified
    assert metrics.reliable_carry_length == "unbounded"
    assert metrics.carry_first_failure is None


def test_post_model_card_states_its_recipe_and_its_carry_failure() -> None:
    card = _card("counter-post")
    recipe, arch = card.recipe, card.architecture
    assert (arch.cell, arch.nonlinearity, arch.hidden_size) == ("rnn", "tanh", 16)
    assert (recipe.optimizer, recipe.learning_rate) == ("adagrad", 1.0)
    assert (recipe.train_size, recipe.val_size, recipe.min_digits, recipe.max_digits) == (
        9000,
        1000,
        1,
        10,
    )
    assert recipe.carry_rich_share == 0
    assert recipe.hidden_noise_std == 0
    metrics = card.metrics
    # Not certified, so the card must give a finite reliable length and where it broke.
    assert not metrics.carry_certified
    failure = metrics.carry_first_failure
    assert failure is not None
    assert metrics.reliable_carry_length == failure.nines - 1
