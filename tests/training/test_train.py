"""Training: it learns, it is deterministic for a seed, and it stops where the recipe says."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.certificate import certify_onnx
from training.data import GATED_DATA, ROBUST_DATA, DataSpec
from training.evaluate import exact_match, ort_predictor, random_numbers
from training.model import ModelConfig
from training.onnx_graph import export_onnx
from training.train import (
    FORGET_LIMIT,
    GATE_LIMIT,
    Recipe,
    post_recipe,
    robust_recipe,
    torch_exact_match,
    train,
)


def _small(recipe: Recipe, epochs: int) -> Recipe:
    return replace(
        recipe,
        data=replace(recipe.data, train_size=600, val_size=200),
        max_epochs=epochs,
        min_epochs=min(recipe.min_epochs, epochs),
    )


def test_a_short_run_of_the_post_recipe_learns() -> None:
    recipe = replace(post_recipe(seed=0), max_epochs=2, stop="certified", min_epochs=2)
    trained = train(recipe, progress=False)
    untrained = train(
        replace(recipe, max_epochs=1, min_epochs=1, learning_rate=1e-9), progress=False
    )
    assert torch_exact_match(untrained.model, trained.split.val) < 0.1
    assert trained.val_accuracy > 0.9
    assert trained.epochs_run == len(trained.history) == 2  # did not stop at 100%
    assert trained.kernels.threads == 1


def test_same_seed_gives_identical_weights() -> None:
    recipe = _small(robust_recipe(seed=5), epochs=1)  # the noisy loop, seeded noise
    first, second = train(recipe, progress=False), train(recipe, progress=False)
    for a, b in zip(
        first.model.state_dict().values(), second.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    other = train(replace(recipe, seed=6), progress=False)
    assert not torch.equal(other.model.readout.weight, first.model.readout.weight)


def test_stops_at_the_first_perfect_epoch() -> None:
    # Numbers of 1-2 digits without noise: perfect within a few dozen epochs.
    recipe = replace(
        robust_recipe(seed=0),
        data=DataSpec(train_size=80, val_size=10, max_digits=2),
        model=ModelConfig(),
        max_epochs=300,
        stop="perfect",
        min_epochs=1,
        batch_size=8,
    )
    trained = train(recipe, progress=False)
    assert trained.val_accuracy == 1.0
    assert trained.history.index(1.0) == trained.epochs_run - 1 < 299
    assert trained.wall_seconds > 0


def test_a_certified_recipe_stops_at_the_first_epoch_the_proof_passes() -> None:
    """From min_epochs on, every epoch at 100% validation is proved; the first unbounded
    proof ends training, and no epoch before it had one."""
    recipe = replace(_small(robust_recipe(seed=2), epochs=12), min_epochs=3)
    trained = train(recipe, progress=False)
    perfect = [e for e, acc in enumerate(trained.history, 1) if acc == 1.0 and e >= 3]
    assert sorted(trained.proofs) == perfect
    certified = [e for e, proof in trained.proofs.items() if proof.unbounded]
    if certified:
        assert certified == [trained.epochs_run] == [trained.certified_at]
    else:
        assert trained.epochs_run == 12
        assert trained.certified_at is None


def test_the_robust_recipe_adds_inner_nines_and_state_noise_for_gated_cells_only() -> None:
    rnn = robust_recipe(cell="rnn")
    assert rnn.data == ROBUST_DATA
    assert (rnn.model.hidden_noise_std, rnn.model.state_noise_std) == (1.0, 0.0)
    for cell in ("gru", "lstm"):
        gated = robust_recipe(cell=cell)
        assert gated.data == GATED_DATA
        assert gated.data.inner_nines_share > 0
        assert gated.model.state_noise_std > 0
        assert (gated.model.cell_state_penalty > 0) == (cell == "lstm")
        # the gate that keeps a memory: a GRU's update gate, an LSTM's forget gate
        assert gated.model.gate_limit == (GATE_LIMIT if cell == "gru" else FORGET_LIMIT)
        assert replace(gated, data=rnn.data, model=rnn.model) == rnn  # nothing else differs


@pytest.mark.slow
def test_a_certified_robust_gru_answers_right_where_a_leaky_memory_would_not(
    tmp_path: Path,
) -> None:
    """What the robust GRU recipe promises (every carry proved), and what the proof promises:
    the exported model answers right on long trailing and inner runs of nines, which a GRU
    trained without the gated additions gets wrong (9 x 100 then 5)."""
    trained = train(replace(robust_recipe(cell="gru", seed=1), max_epochs=20), progress=False)
    assert trained.certified_at is not None
    path = tmp_path / "gru.onnx"
    export_onnx(trained.model, path)
    assert certify_onnx(path).certified
    rng = np.random.default_rng(0)
    numbers = [
        *("9" * k for k in (1, 50, 999, 5000)),
        *(d * k + "5" for d in "0123456789" for k in (100, 1000, 3000)),
        *(
            prefix + "9" * k + "3" + tail
            for k in (7, 300)
            for prefix, tail in [("", ""), ("8", "21")]
        ),
        *random_numbers(40, 200, rng),
    ]
    assert exact_match(ort_predictor(path), numbers) == 1.0
