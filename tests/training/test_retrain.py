"""The shipped default model is reproducible: retraining from its card gives the same file."""

from pathlib import Path

import pytest

from app.card import ModelCard
from training.export import export, recipe_from_card
from training.train import train

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.slow
def test_retraining_counter_from_its_card_reproduces_its_metrics(tmp_path: Path) -> None:
    shipped = ModelCard.model_validate_json((MODELS / "counter.json").read_text())
    trained = train(recipe_from_card(shipped), progress=False)
    card = export(trained, tmp_path / "counter", scan_up_to=shipped.metrics.carry_scanned_up_to)
    assert card.sha256 == shipped.sha256  # the same .onnx bytes, not just the same figures
    assert card.metrics == shipped.metrics
    assert card.architecture == shipped.architecture
    # Everything in the recipe but the wall time it took.
    assert card.recipe.model_copy(update={"wall_seconds": 0}) == shipped.recipe.model_copy(
        update={"wall_seconds": 0}
    )
