"""The reproduction sweep: one row per recipe/cell, figures from the seeds, results reused."""

from pathlib import Path

import pytest

from training import reproduce
from training.reproduce import SeedResult, run, table


def _result(
    row: str, seed: int, carry: int, epochs: int | None, kernels: str = "portable DEFAULT"
) -> SeedResult:
    return SeedResult(
        row=row,
        seed=seed,
        kernels=kernels,
        epochs_run=epochs or 50,
        epochs_to_perfect=epochs,
        val_accuracy=1.0 if epochs else 0.98,
        accuracy_20=0.99,
        accuracy_25=0.98,
        longest_exact_run=carry,
        scanned_up_to=1000,
        proved="unbounded" if carry >= 1000 else min(carry, 2),
        wall_seconds=1.0,
    )


def test_table_summarises_each_row_over_its_seeds() -> None:
    results = [
        _result("post-rnn", 0, 3, 1),
        _result("post-rnn", 1, 12, 4),
        _result("post-rnn", 2, 1000, None),
        _result("robust-rnn", 0, 1000, 30),
        _result("robust-rnn", 0, 1000, 12, kernels="native AVX2"),
    ]
    text = table(results, seeds=3, scan_up_to=1000, out="docs/reproduction.md")
    lines = text.splitlines()
    post = next(line for line in lines if line.startswith("| post-rnn | portable DEFAULT | 3 |"))
    assert "| 2/3 |" in post  # two seeds reached 100% validation
    assert "| 1 / 4 / 50 |" in post  # epochs run: min / median / max
    assert "| 3 / 12 / ≥1000 |" in post  # longest exact runs, the scan bound shown as such
    assert "| 2 / 2 / unbounded |" in post  # proved lengths
    assert "| 1/3 |" in post  # certified
    for kernels in ("portable DEFAULT", "native AVX2"):  # one line per kernels
        robust = next(line for line in lines if line.startswith(f"| robust-rnn | {kernels} | 1 |"))
        assert "| 1/1 |" in robust
    assert "ATEN_CPU_CAPABILITY=avx2 python -m training reproduce" in text


def test_unknown_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="post-rnn"):
        run(1, ["post-transformer"], 10, None)


def test_a_sweep_writes_its_table_and_reuses_its_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "reproduction.md"
    text = run(1, ["post-gru"], 200, out)
    assert out.read_text() == text
    line = next(line for line in text.splitlines() if line.startswith("| post-gru | portable"))
    assert "n/a" not in line  # the certificate covers GRUs: proved and certified are filled
    assert "--rows post-gru" in text

    # A rerun with the same scan bound trains nothing: every seed comes from the .jsonl.
    def no_training(row: str, seed: int, scan_up_to: int, mode: str) -> SeedResult:
        raise AssertionError("retrained a cached seed")

    monkeypatch.setattr(reproduce, "run_seed", no_training)
    assert run(1, ["post-gru"], 200, out) == text


def test_every_row_has_a_claim_and_its_recipe() -> None:
    assert set(reproduce.CLAIMS) == set(reproduce.ROWS)
    for row in reproduce.ROWS:
        recipe = reproduce.recipe_for(row, seed=4)
        name, _, cell = row.partition("-")
        assert (recipe.name, recipe.model.cell, recipe.seed) == (name, cell, 4)


def test_a_robust_seed_left_uncertified_is_listed_with_the_certificates_words() -> None:
    said = "a run of 0 nines is not proved: the steady copying boxes escaped"
    refused = _result("robust-gru", 3, 1000, 11)
    refused = SeedResult(**{**refused.__dict__, "proved": -1, "reason": said})
    unrecorded = SeedResult(**{**_result("robust-gru", 4, 1000, 9).__dict__, "proved": -1})
    results = [
        _result("robust-gru", 0, 1000, 10),
        refused,
        unrecorded,
        _result("post-rnn", 0, 3, 1),
    ]
    text = table(results, seeds=5, scan_up_to=1000, out="docs/reproduction.md")
    assert f"- robust-gru, portable DEFAULT, seed 3: {said}" in text
    assert (
        "- robust-gru, portable DEFAULT, seed 4: (not recorded by the run that trained it)" in text
    )
    assert "seed 0:" not in text  # certified seeds and post rows are not listed


def test_a_seed_proved_under_the_tighter_allowance_says_so() -> None:
    """A proof holds only where onnxruntime's kernels are within its allowance: a seed proved
    under 2e-6 shows it; one under the default (or from before there was a choice) does not."""
    tight = SeedResult(**{**_result("robust-gru", 6, 1000, 12).__dict__, "tanh_error_bound": 2e-6})
    default = SeedResult(**{**_result("robust-gru", 7, 1000, 9).__dict__, "tanh_error_bound": 1e-5})
    text = table(
        [tight, default, _result("robust-gru", 8, 1000, 9)], 9, 1000, "docs/reproduction.md"
    )
    seeds = {line.split(" | ")[2]: line for line in text.splitlines() if "| robust-gru |" in line}
    assert "| unbounded (allowance 2e-06) |" in seeds["6"]
    assert "| unbounded |" in seeds["7"]
    assert "| unbounded |" in seeds["8"]
