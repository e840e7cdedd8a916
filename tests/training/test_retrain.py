"""Retraining: what reproduces bit for bit, and what a retrained model must have on any CPU.

Nothing here compares a retrain with the bytes of a shipped file: those were made on one
processor. What holds everywhere is asserted instead: the same settings twice give the same
bytes; 'portable' kernels give the same bytes whatever CPU torch is told it has; and a robust
model retrained under other kernels (ATEN_CPU_CAPABILITY emulates other processors, each in its
own process) still has what its recipe promises: every carry proved.
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bench import reproducibility
from core.card import ModelCard
from training.export import export
from training.kernels import EMULATED_CPUS
from training.train import post_recipe, robust_recipe, train

ROOT = Path(__file__).resolve().parents[2]


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m training ...` in a fresh process with this environment."""
    clean = {k: v for k, v in os.environ.items() if k not in ENV_KNOBS}
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _card(path: Path) -> ModelCard:
    return ModelCard.model_validate_json(path.with_suffix(".json").read_text())


def test_the_same_settings_twice_give_the_same_bytes(tmp_path: Path) -> None:
    recipe = post_recipe(seed=1)
    first = export(train(recipe, progress=False), tmp_path / "a", scan_up_to=20, proof_limit=20)
    second = export(train(recipe, progress=False), tmp_path / "b", scan_up_to=20, proof_limit=20)
    assert first.sha256 == second.sha256
    assert first.metrics == second.metrics


def test_a_noisy_epoch_is_deterministic_too() -> None:
    """The robust recipe's noise is seeded: two runs of two epochs end in equal weights."""
    recipe = replace(robust_recipe(seed=3), max_epochs=2, min_epochs=1)
    first, second = (train(recipe, progress=False).model.state_dict() for _ in range(2))
    assert all(torch.equal(first[name], second[name]) for name in first)


ENV_KNOBS = {name for env in EMULATED_CPUS.values() for name in env}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("recipe", "cell", "epochs"), [("robust", "rnn", 2), ("post", "rnn", 1), ("robust", "lstm", 1)]
)
def test_portable_kernels_train_the_same_weights_under_every_library_knob(
    recipe: str, cell: str, epochs: int
) -> None:
    """Each knob of training.kernels.EMULATED_CPUS set alone, each in a process of its own."""

    def run(knob: str) -> str:
        return reproducibility.run("portable", cell, knob, epochs, recipe).digest

    with ThreadPoolExecutor(2) as pool:
        digests = dict(zip(EMULATED_CPUS, pool.map(run, EMULATED_CPUS), strict=True))
    assert len(set(digests.values())) == 1, digests


@pytest.mark.slow
def test_a_robust_model_is_certified_under_other_cpu_kernels(tmp_path: Path) -> None:
    """The recipe promises a proof of every carry, on whatever kernels it trains with."""
    capabilities = ["default", "avx2"]

    def run(capability: str) -> subprocess.CompletedProcess[str]:
        out = tmp_path / capability
        args = ["train", "--recipe", "robust", "--kernels", "native", "--out", str(out)]
        return _cli([*args, "--quiet"], {"ATEN_CPU_CAPABILITY": capability}, ROOT)

    with ThreadPoolExecutor(len(capabilities)) as pool:
        results = list(pool.map(run, capabilities))
    for capability, result in zip(capabilities, results, strict=True):
        assert result.returncode == 0, result.stderr[-2000:]
        card = _card(tmp_path / capability)
        assert card.recipe.kernels.mode == "native"
        assert card.recipe.kernels.aten_capability == capability.upper()
        assert card.metrics.val_accuracy == 1.0
        assert card.recipe.epochs_run <= card.recipe.max_epochs
        assert card.metrics.reliable_carry_length == "unbounded", card.metrics.certificate.reason
        assert card.metrics.carry_scan.failing_runs == []


def test_retrain_reports_same_bytes_for_a_portable_card(tmp_path: Path) -> None:
    model = tmp_path / "tiny"
    made = _cli(
        ["train", "--recipe", "post", "--out", str(model), "--scan-up-to", "5", "--quiet"],
        {},
        ROOT,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    again = _cli(["retrain", str(model)], {"ATEN_CPU_CAPABILITY": "avx2"}, ROOT)
    assert again.returncode == 0, again.stdout + again.stderr[-2000:]
    assert "same bytes" in again.stdout
    assert json.loads(model.with_suffix(".json").read_text())["recipe"]["kernels"]["mode"] == (
        "portable"
    )
