"""Benchmark: wall time to train, certify and export the default model from scratch, and scans.

    python -m bench.training [--repeats 3]

Prints, for the default model (`counter`: robust recipe, its card's seed): the median wall time
of each stage over the repeats (train; export with every card metric: ONNX file, accuracy by
length, a 10^5 carry scan in onnxruntime, certificate, plot), and the median time of a 10^5
carry scan alone in onnxruntime and in torch, measured side by side in this one run.
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from core.card import ModelCard
from core.certify import certify_onnx
from training.carry_scan import OnnxCarryEngine, scan_carries
from training.export import export, recipe_from_card
from training.model import TorchCarryEngine
from training.train import train

MODELS = Path(__file__).resolve().parents[1] / "models"
SCAN = 100_000


def _timed(action: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    action(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (default: 3)")
    args = parser.parse_args()
    card = ModelCard.model_validate_json((MODELS / "counter.json").read_text())
    recipe = recipe_from_card(card)
    stages: dict[str, list[float]] = {"train": [], "export (all metrics)": [], "total": []}
    scans: dict[str, list[float]] = {"onnxruntime": [], "torch": [], "certify": []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            started = time.perf_counter()
            trained = train(recipe, progress=False)
            stages["train"].append(time.perf_counter() - started)
            out = Path(folder) / "counter"
            stages["export (all metrics)"].append(_timed(export, trained, out))
            stages["total"].append(time.perf_counter() - started)
            onnx = out.with_suffix(".onnx")
            scans["onnxruntime"].append(_timed(scan_carries, OnnxCarryEngine(onnx), SCAN))
            scans["torch"].append(_timed(scan_carries, TorchCarryEngine(trained.model), SCAN))
            scans["certify"].append(_timed(certify_onnx, onnx))
    print(
        f"default model ({card.name}: {recipe.name} recipe, seed {recipe.seed}, "
        f"{recipe.max_epochs} epochs, {recipe.threads} thread), {args.repeats} runs, median s:"
    )
    for name, times in stages.items():
        print(
            f"  {name:<22} {statistics.median(times):7.2f}  (all: "
            + ", ".join(f"{t:.2f}" for t in times)
            + ")"
        )
    print(f"carry scan of every k <= {SCAN:,} nines x 9 next digits, median s:")
    for name, times in scans.items():
        label = "certificate alone" if name == "certify" else f"scan in {name}"
        print(f"  {label:<22} {statistics.median(times):7.3f}")
    ratio = statistics.median(scans["torch"]) / statistics.median(scans["onnxruntime"])
    print(f"  torch / onnxruntime scan time: {ratio:.2f}")


if __name__ == "__main__":
    main()
