"""The reproduction sweep: the post's claims beside what its recipe does over many seeds.

Each row (a recipe and a cell) is trained from scratch for seeds 0..N-1 and measured in torch:
epochs to 100% validation accuracy, exact match on 20- and 25-digit numbers, the exact reliable
carry length (`carry_scan.scan_carries` on a `TorchCarryEngine`) and, for the tanh RNN, the box
certificate. Results go to a JSON-lines file as they come (a rerun reuses them), then to a
Markdown table.
"""

import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from training.carry_scan import scan_carries
from training.certify import certify
from training.evaluate import random_numbers
from training.model import Counter, TorchCarryEngine
from training.train import RECIPES, Recipe, torch_exact_match, train
from training.weights import RnnWeights

ROWS = ("post-rnn", "post-lstm", "post-gru", "robust-rnn")

# What the post says, row by row (quoted or closely paraphrased from the reference text).
CLAIMS = {
    "post-rnn": (
        "100% on train and validation after 3-4 epochs; 20-digit numbers 'worked perfectly "
        "well'; fine up to 23-25 digits; fails beyond about 25 trailing nines"
    ),
    "post-lstm": "LSTMs 'give similar results'",
    "post-gru": "(not tried in the post)",
    "robust-rnn": "(ours: carry-rich data, Adam lr 1e-2, hidden noise std 1.0)",
}

NOTES = (
    "The post's accuracy is TensorFlow's per-digit accuracy; ours is whole-number exact "
    "match (every digit right), which is stricter.",
    "Adagrad as in TensorFlow 1.x, the post's framework: its accumulator starts at 0.1. "
    "PyTorch's starts at 0, so with lr 1 the first step would move every weight by 1.",
    "The post gives no batch size; we use 32. Weights use PyTorch's default initialisation.",
    "post rows stop at the first epoch with 100% validation accuracy (at most 50 epochs); "
    "robust runs a fixed 30 epochs with Gaussian noise (std 1.0) on the hidden "
    "pre-activations during training.",
    "Reliable carry length: every carry must be right, including the digits after it; "
    "'certified' is the interval-box proof of `training/certify.py` (tanh RNN only).",
)


@dataclass(frozen=True)
class SeedResult:
    """One trained seed of one row."""

    row: str
    seed: int
    epochs_run: int
    epochs_to_perfect: int | None  # first epoch with 100% validation accuracy
    val_accuracy: float
    accuracy_20: float
    accuracy_25: float
    reliable_carry: int
    scanned_up_to: int
    certified: bool | None  # None: the certificate does not cover this cell
    wall_seconds: float


def recipe_for(row: str, seed: int) -> Recipe:
    """'post-lstm' -> the post recipe with an LSTM cell, and so on."""
    name, _, cell = row.partition("-")
    if row not in ROWS:
        raise ValueError(f"unknown row {row!r}; rows are {', '.join(ROWS)}")
    return RECIPES[name](cell=cell, seed=seed)  # type: ignore[arg-type]


def rnn_weights(counter: Counter) -> RnnWeights:
    """The torch model's weights in the certifier's layout (float64)."""
    params = {name: p.detach().double().numpy() for name, p in counter.state_dict().items()}
    return RnnWeights(
        w_ih=params["cell.weight_ih_l0"],
        w_hh=params["cell.weight_hh_l0"],
        b_ih=params["cell.bias_ih_l0"],
        b_hh=params["cell.bias_hh_l0"],
        w_out=params["readout.weight"],
        b_out=params["readout.bias"],
    )


def run_seed(row: str, seed: int, scan_up_to: int) -> SeedResult:
    """Train one seed of a row and measure it."""
    trained = train(recipe_for(row, seed), progress=False)
    model = trained.model
    rng = np.random.default_rng(seed)
    scan = scan_carries(TorchCarryEngine(model), scan_up_to)
    is_tanh_rnn = model.config.cell == "rnn" and model.config.nonlinearity == "tanh"
    perfect = [epoch for epoch, acc in enumerate(trained.history, 1) if acc == 1.0]
    return SeedResult(
        row=row,
        seed=seed,
        epochs_run=trained.epochs_run,
        epochs_to_perfect=perfect[0] if perfect else None,
        val_accuracy=trained.val_accuracy,
        accuracy_20=torch_exact_match(model, random_numbers(20, 1000, rng)),
        accuracy_25=torch_exact_match(model, random_numbers(25, 1000, rng)),
        reliable_carry=scan.reliable_length,
        scanned_up_to=scan.scanned_up_to,
        certified=certify(rnn_weights(model)).certified if is_tanh_rnn else None,
        wall_seconds=round(trained.wall_seconds, 1),
    )


def _load(path: Path) -> dict[tuple[str, int], SeedResult]:
    if not path.is_file():
        return {}
    results = (SeedResult(**json.loads(line)) for line in path.read_text().splitlines() if line)
    return {(r.row, r.seed): r for r in results}


def _spread(values: Sequence[float], fmt: str = "{:g}") -> str:
    """'min / median / max' of some numbers."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return " / ".join(fmt.format(v) for v in (low, mid, high))


def _carry(reliable: int, scanned_up_to: int) -> str:
    """A reliable carry length; "≥N" when no failure was found up to the scan's end N."""
    return f"≥{scanned_up_to}" if reliable >= scanned_up_to else str(reliable)


def table(results: Sequence[SeedResult], seeds: int, scan_up_to: int, command: str) -> str:
    """The Markdown page: the summary table, the post's claims, and every seed."""
    lines = [
        '# Reproducing "Learning to count with RNNs"',
        "",
        f"Every figure below was produced by `{command}` (seeds 0..{seeds - 1} per row, "
        "1 torch thread, measured in torch). Exact match = every output digit right.",
        "Accuracy at 20 and 25 digits: 1000 random numbers each (first digit non-zero). "
        f"Reliable carry length: the exact scan of every run of k <= {scan_up_to} nines "
        "followed by every digit 0-8 (`training/carry_scan.py`); shown as min / median / max "
        "(with an even count of seeds, the lower middle one, so it is a seed's real value).",
        "Each seed's result is kept in a `.jsonl` file beside the page and reused by a rerun; "
        "delete it to retrain every seed (10 seeds of all rows: about 6 minutes on 2 cores).",
        "",
        "| row | seeds | reached 100% validation | epochs to 100% (min / median / max) "
        "| accuracy at 20 digits (min / median / max) | at 25 digits "
        "| reliable carry length (min / median / max) | certified | train seconds (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        rows = [r for r in results if r.row == row]
        if not rows:
            continue
        reached = [r.epochs_to_perfect for r in rows if r.epochs_to_perfect is not None]
        certified = [r.certified for r in rows if r.certified is not None]
        carries = [r.reliable_carry for r in rows]
        carry = " / ".join(
            _carry(c, scan_up_to)
            for c in (min(carries), statistics.median_low(carries), max(carries))
        )
        lines.append(
            f"| {row} | {len(rows)} | {len(reached)}/{len(rows)} "
            f"| {_spread(reached) if reached else 'never'} "
            f"| {_spread([r.accuracy_20 for r in rows], '{:.3f}')} "
            f"| {_spread([r.accuracy_25 for r in rows], '{:.3f}')} "
            f"| {carry} "
            f"| {f'{sum(certified)}/{len(certified)}' if certified else 'n/a'} "
            f"| {statistics.median(r.wall_seconds for r in rows):.1f} |"
        )
    lines += ["", "What the post claims, row by row:", ""]
    lines += [f"- **{row}**: {claim}" for row, claim in CLAIMS.items()]
    lines += ["", "How our runs differ from the post, and why:", ""]
    lines += [f"- {note}" for note in NOTES]
    lines += [
        "",
        "## Every seed",
        "",
        "| row | seed | epochs run | first 100% epoch | validation | @20 | @25 "
        "| reliable carry | certified |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: (ROWS.index(r.row), r.seed)):
        lines.append(
            f"| {r.row} | {r.seed} | {r.epochs_run} | {r.epochs_to_perfect or '-'} "
            f"| {r.val_accuracy:.3f} | {r.accuracy_20:.3f} | {r.accuracy_25:.3f} "
            f"| {_carry(r.reliable_carry, r.scanned_up_to)} "
            f"| {'n/a' if r.certified is None else r.certified} |"
        )
    return "\n".join(lines) + "\n"


def run(
    seeds: int,
    rows: Sequence[str] | None,
    scan_up_to: int,
    out: Path | None,
    results_file: Path | None = None,
) -> str:
    """Run (or reuse) every (row, seed), print progress, write and return the Markdown."""
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    rows = list(rows or ROWS)
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise ValueError(f"unknown rows {unknown}; rows are {', '.join(ROWS)}")
    cache = results_file or (out.with_suffix(".jsonl") if out else None)
    done = _load(cache) if cache else {}
    results = []
    for row in rows:
        for seed in range(seeds):
            result = done.get((row, seed))
            if result is None or result.scanned_up_to != scan_up_to:
                result = run_seed(row, seed, scan_up_to)
                if cache:
                    with cache.open("a") as file:
                        file.write(json.dumps(asdict(result)) + "\n")
            print(
                f"{row} seed {seed}: epochs {result.epochs_run}, val {result.val_accuracy:.3f}, "
                f"@20 {result.accuracy_20:.3f}, @25 {result.accuracy_25:.3f}, "
                f"carry {_carry(result.reliable_carry, result.scanned_up_to)}, "
                f"certified {result.certified}",
                file=sys.stderr,
                flush=True,
            )
            results.append(result)
    command = f"python -m training reproduce --seeds {seeds} --scan-up-to {scan_up_to}"
    if rows != list(ROWS):
        command += " --rows " + " ".join(rows)
    if out:
        command += f" --out {out}"
    text = table(results, seeds, scan_up_to, command)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    else:
        print(text)
    return text
