"""Benchmark: wall time from scratch to a certified model on disk, over seeds, and its stages.

    python -m bench.training [--seeds 5] [--kernels portable]

For seeds 0..N-1 of the robust recipe (trained until the certificate proves every carry), the
wall time of training (with its per-epoch proofs), of the export with every card metric (ONNX
file, accuracy by length to 10^5 digits, the carry scan of every 3-digit tail to 1000 nines,
the proof, the plot) and of both together, with the median and the spread; then the carry scan
alone in onnxruntime and in torch side by side, and the proof alone, on the last model.
"""

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from training import kernels

SCAN = 1000


def _timed(action: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    action(*args)
    return time.perf_counter() - started


def _line(name: str, times: list[float], digits: int = 2) -> str:
    middle, low, high = statistics.median(times), min(times), max(times)
    return f"| {name} | {middle:.{digits}f} | {low:.{digits}f}-{high:.{digits}f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default: 5)")
    parser.add_argument("--kernels", choices=["portable", "native"], default="portable")
    args = parser.parse_args()
    kernels.pin(args.kernels)  # before torch runs anything
    from core.certificate import certify_onnx
    from training.carry_scan import OnnxCarryEngine, scan_carries
    from training.export import export
    from training.model import TorchCarryEngine
    from training.train import robust_recipe, train

    stages: dict[str, list[float]] = {"train until certified": [], "export (every metric)": []}
    total: list[float] = []
    epochs: list[int] = []
    certified = 0
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            recipe = replace(robust_recipe(seed=seed), kernels=args.kernels)
            started = time.perf_counter()
            trained = train(recipe, progress=False)
            stages["train until certified"].append(time.perf_counter() - started)
            out = Path(folder) / f"counter-{seed}"
            card = export(trained, out)
            stages["export (every metric)"].append(
                time.perf_counter() - started - stages["train until certified"][-1]
            )
            total.append(time.perf_counter() - started)
            epochs.append(trained.epochs_run)
            certified += card.metrics.certificate.certified
            print(
                f"seed {seed}: {trained.epochs_run} epochs, certified "
                f"{card.metrics.certificate.certified}, {total[-1]:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        onnx = out.with_suffix(".onnx")
        scans: dict[str, list[float]] = {"onnxruntime": [], "torch": [], "proof": []}
        for _ in range(3):  # alternating, side by side
            scans["onnxruntime"].append(_timed(scan_carries, OnnxCarryEngine(onnx), SCAN))
            scans["torch"].append(_timed(scan_carries, TorchCarryEngine(trained.model), SCAN))
            scans["proof"].append(_timed(certify_onnx, onnx))
    command = " ".join(["python -m bench.training", *sys.argv[1:]])
    print(
        f"\n`{command}`: robust recipe, seeds 0-{args.seeds - 1}, {args.kernels} kernels, "
        f"1 torch thread; {certified}/{args.seeds} certified, epochs "
        f"{min(epochs)}-{max(epochs)} (median {statistics.median(epochs):g}).\n"
    )
    print("| stage | median s | spread |")
    print("|---|---|---|")
    for name, times in stages.items():
        print(_line(name, times, 1))
    print(_line("**from scratch to a certified model on disk** (goal <= 60 s)", total, 1))
    print(
        _line(f"carry scan to {SCAN} nines, every 3-digit tail, onnxruntime", scans["onnxruntime"])
    )
    print(_line("the same scan in torch", scans["torch"]))
    print(_line("the proof alone (unbounded, from the .onnx)", scans["proof"], 3))


if __name__ == "__main__":
    main()
