"""The shipped models: cards that validate, match their files, and whose every figure the
shipped .onnx reproduces when re-measured here, on whatever CPU this is."""

import hashlib
from pathlib import Path

import pytest

from core.card import ModelCard
from core.dynamics import analyse
from core.weights import recurrent_weights_from_onnx
from training.cli_cards import compare
from training.explain import predicted
from training.export import export, recipe_from_card
from training.train import POST_SEED, train

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
    assert card.metrics.carry_scan.scanned_up_to >= 1000
    assert card.metrics.carry_scan.tail_digits == 3
    assert card.metrics.carry_scan.engine.startswith("onnxruntime")
    assert card.recipe.kernels.mode == "portable"  # retrains to the same bytes on any x86-64


@pytest.mark.slow
@pytest.mark.parametrize("name", ["counter", "counter-post"])
def test_every_figure_on_a_shipped_card_is_reproduced_from_its_file(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Accuracy by length, the proof and the carry scan, re-measured in this onnxruntime."""
    ok, text = compare(MODELS / name)
    assert ok, text
    assert "DIFFERS" not in text


def test_default_model_is_proved_and_exact_at_every_tested_length() -> None:
    metrics = _card("counter").metrics
    assert metrics.val_accuracy == metrics.train_accuracy == 1.0
    assert all(a.correct == a.samples for a in metrics.accuracy_by_length)
    assert max(a.length for a in metrics.accuracy_by_length) >= 100_000
    assert metrics.reliable_carry_length == "unbounded"
    assert metrics.certificate.certified
    assert metrics.carry_scan.failing_runs == []
    assert metrics.carry_scan.first_failure is None


def test_post_model_card_states_its_recipe_and_what_it_cannot_do() -> None:
    card = _card("counter-post")
    recipe, arch = card.recipe, card.architecture
    assert (arch.cell, arch.nonlinearity, arch.hidden_size) == ("rnn", "tanh", 16)
    assert (recipe.optimizer, recipe.learning_rate, recipe.stop) == ("adagrad", 1.0, "perfect")
    assert (recipe.train_size, recipe.val_size, recipe.min_digits, recipe.max_digits) == (
        9000,
        1000,
        1,
        10,
    )
    assert recipe.carry_rich_share == 0
    assert recipe.hidden_noise_std == 0
    metrics = card.metrics
    # Not proved for every run, and the card gives the scan's failures beside the proof.
    assert not metrics.certificate.certified
    proved = metrics.reliable_carry_length
    assert proved != "unbounded"
    scan = metrics.carry_scan
    assert scan.first_failure is not None
    assert all(first > proved for first, _ in scan.failing_runs)
    assert scan.longest_exact_run == scan.first_failure.nines - 1


@pytest.mark.slow
def test_a_retrain_of_the_shipped_post_model_fails_where_its_card_says(tmp_path: Path) -> None:
    """The post's failure is part of the product: retrained from its card (recipe, seed,
    portable kernels) on this machine, counter-post loses the carry at the same run of nines,
    the same way, and its card says why that seed."""
    card = _card("counter-post")
    assert card.recipe.seed == POST_SEED
    assert f"seed {POST_SEED}" in card.notes
    shipped = card.metrics.carry_scan
    assert shipped.first_failure is not None
    assert shipped.first_failure.got == "0"  # the carry lost on a run of nines, as in the post
    trained = train(recipe_from_card(card), progress=False)
    again = export(trained, tmp_path / "counter-post", scan_up_to=shipped.scanned_up_to)
    assert again.metrics.carry_scan.first_failure == shipped.first_failure
    assert again.metrics.carry_scan.failing_runs == shipped.failing_runs
    print(
        f"retrained counter-post: {'same bytes' if again.sha256 == card.sha256 else 'other bytes'}"
    )


@pytest.mark.parametrize("name", ["counter", "counter-post"])
def test_the_card_s_carry_dynamics_is_what_its_file_gives(name: str) -> None:
    """`make explain` wrote it; a retrained file without a rerun would contradict it."""
    card = _card(name)
    assert card.dynamics is not None
    dynamics = analyse(recurrent_weights_from_onnx(MODELS / card.onnx_file))
    assert card.dynamics.carry_attractor == dynamics.carry_attractor
    assert card.dynamics.predicted_exact_run == predicted(dynamics)
    assert card.dynamics.lost_at == dynamics.chain.lost_at
    assert card.dynamics.figure in card.plots
    # the certified model has the attractor; the post model's carry is a transient lost where
    # its scan first fails
    assert card.dynamics.carry_attractor == card.metrics.certificate.certified
    if not card.dynamics.carry_attractor:
        assert card.dynamics.predicted_exact_run == card.metrics.carry_scan.longest_exact_run
