"""The reproduction sweep: the post's claims beside what its recipe does over many seeds.

Each row (a recipe and a cell) is trained from scratch for seeds 0..N-1 and measured in torch:
epochs to 100% validation accuracy, exact match on 20- and 25-digit numbers, the exact carry
scan (`carry_scan.scan_carries` on a `TorchCarryEngine`: every run of nines, next digit and
3-digit tail) and the proved reliable carry length (core.certify, for the cells it covers).
Results go to a JSON-lines file as they come, keyed by row, seed and the CPU kernels that ran
them (a rerun reuses them), then to a Markdown table.
"""

import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from core.card import Kernels
from core.certify import DEFAULT_LIMIT, DEFAULT_TANH_ERROR
from training import decided_seeds, kernels
from training.carry_scan import scan_carries
from training.evaluate import random_numbers
from training.explain_seeds import kept_section
from training.model import TorchCarryEngine
from training.proof import prove_model
from training.train import (
    FORGET_LIMIT,
    GATE_LIMIT,
    RECIPES,
    Recipe,
    torch_exact_match,
    train,
)

ROWS = ("post-rnn", "post-lstm", "post-gru", "robust-rnn", "robust-gru", "robust-lstm")

# What the post says, row by row (quoted or closely paraphrased from the reference text).
CLAIMS = {
    "post-rnn": (
        "100% on train and validation after 3-4 epochs; 20-digit numbers 'worked perfectly "
        "well'; fine up to 23-25 digits; fails beyond about 25 trailing nines"
    ),
    "post-lstm": "LSTMs 'give similar results'",
    "post-gru": "(not tried in the post)",
    "robust-rnn": (
        "(ours: carry-rich data, Adam lr 1e-2, hidden noise std 1.0, trained until the "
        "certificate proves every carry)"
    ),
    "robust-gru": (
        "(ours: the robust recipe with a GRU, plus runs of nines inside a fifth of the numbers, "
        "noise std 0.3 on the state after every step and, in its fused-step rows, update-gate "
        f"pre-activations past {GATE_LIMIT:g} paying 0.01 x their mean squared excess)"
    ),
    "robust-lstm": (
        "(ours: the robust recipe with an LSTM, plus runs of nines inside a fifth of the "
        "numbers, noise std 0.3 on h and c after every step and 0.01 x mean c^2 in the loss "
        f"and, in its fused-step rows, forget-gate pre-activations past {FORGET_LIMIT:g} paying "
        "0.01 x their mean squared excess)"
    ),
}

NOTES = (
    "The post's accuracy is TensorFlow's per-digit accuracy; ours is whole-number exact "
    "match (every digit right), which is stricter.",
    "Adagrad as in TensorFlow 1.x, the post's framework: its accumulator starts at 0.1. "
    "PyTorch's starts at 0, so with lr 1 the first step would move every weight by 1.",
    "The post gives no batch size; we use 32. Weights use PyTorch's default initialisation.",
    "post rows stop at the first epoch with 100% validation accuracy (at most 50 epochs); "
    "robust rows run at least 5 epochs, then, once validation is 100%, run the certificate "
    "after each epoch and stop when it proves every carry (at most 60 epochs), with Gaussian "
    "noise (std 1.0) on the hidden pre-activations during training (every gate's, for GRU "
    "and LSTM).",
    "robust-gru and robust-lstm also train on numbers with a run of 1-40 nines inside (a "
    "fifth of them: such a run is copied, not carried) with noise (std 0.3) on the state after "
    "every step: trained like the RNN, gated cells keep 'no carry' in a memory that leaks and "
    "answer long inner runs wrong (9 x 100 then 5), which neither the validation set nor the "
    "carry scan (trailing runs) shows, and the certificate rightly refuses them. An LSTM also "
    "lets its cell state c count up for ever (only tanh(c) is read: c reached 578 after 20 000 "
    "random digits, -4497 after 5000 nines), so no box holds it; robust-lstm adds 0.01 x the "
    "mean square of c to the loss.",
    "The fused-step rows of the gated cells also limit the gate that keeps a memory: noise on "
    "every gate's pre-activation teaches the gates to saturate far past it (a GRU's update "
    "gate up to pre-activation 16, so 1 - z down to 1e-7 on some unit while nines are read), "
    "and a unit that keeps nearly all of its state lets no box of its states hold its own "
    "image (an LSTM's c settles near i g / (1 - f), so it counts up while a digit repeats). "
    f"A GRU's update-gate pre-activations past {GATE_LIMIT:g} (1 - z >= "
    f"{1 / (1 + math.exp(GATE_LIMIT)):.2g}) and an LSTM's forget-gate pre-activations "
    f"past {FORGET_LIMIT:g} (f <= {1 / (1 + math.exp(-FORGET_LIMIT)):.3g}) pay 0.01 x their "
    "mean squared excess in the loss. "
    "The fused-step rows before these limits (GRU limited at 9: 9/10; at 5: 10/10 portable, "
    "9/10 native AVX2; LSTM unlimited: 7/10) are in "
    "docs/training.md.",
    "Longest exact run: the scan of every run of k nines, every next digit and every 3-digit "
    "tail (empirical). Proved: the certificate's reliable carry length (`core/certify.py`), "
    "-1 when nothing is proved; certified = proved for every length of run. Each proof allows "
    "every deployed tanh and sigmoid an error of 1e-5, or 2e-6 where 1e-5 proves less (then "
    "shown beside the seed): the service checks its onnxruntime's kernels against it.",
    "Kernels: the CPU kernels torch trained with (training/kernels.py). 'native AVX2' ran "
    "under ATEN_CPU_CAPABILITY=avx2 and so on: the same seed gives other weights under other "
    "kernels, so each is a separate sample of the recipe. 'foreach step' rows ran before the "
    "optimizers' fused steps (the default steps take MKL's vendor-dependent square root); "
    "'fused step' rows are what the code trains today.",
)


@dataclass(frozen=True)
class SeedResult:
    """One trained seed of one row, under one set of kernels."""

    row: str
    seed: int
    kernels: str  # label(): e.g. "native AVX2, fused step" or "portable DEFAULT, foreach step"
    epochs_run: int
    epochs_to_perfect: int | None  # first epoch with 100% validation accuracy
    val_accuracy: float
    accuracy_20: float
    accuracy_25: float
    longest_exact_run: int  # the scan's: every k <= this was right
    scanned_up_to: int
    proved: int | str | None  # K, "unbounded", or None when no certificate covers the cell
    wall_seconds: float  # training, until it stopped
    reason: str = ""  # the certificate's own words when it did not certify ("" when it did)
    # the activation allowance the proof holds under (core.certificate.prove_weights); None:
    # not recorded (runs before there was more than one: DEFAULT_TANH_ERROR's)
    tanh_error_bound: float | None = None

    @property
    def certified(self) -> bool | None:
        return None if self.proved is None else self.proved == "unbounded"


def recipe_for(row: str, seed: int, mode: kernels.Mode = "portable") -> Recipe:
    """'post-lstm' -> the post recipe with an LSTM cell, and so on."""
    name, _, cell = row.partition("-")
    if row not in ROWS:
        raise ValueError(f"unknown row {row!r}; rows are {', '.join(ROWS)}")
    recipe = RECIPES[name](cell=cell, seed=seed)  # type: ignore[arg-type]
    return replace(recipe, kernels=mode)


def label(used: Kernels) -> str:
    """How a row names the kernels it ran on, e.g. 'portable DEFAULT, fused step'."""
    return f"{used.mode} {used.aten_capability}, {used.optimizer_step or 'foreach'} step"


def run_seed(row: str, seed: int, scan_up_to: int, mode: kernels.Mode) -> SeedResult:
    """Train one seed of a row and measure it."""
    trained = train(recipe_for(row, seed, mode), progress=False)
    model = trained.model
    rng = np.random.default_rng(seed)
    scan = scan_carries(TorchCarryEngine(model), scan_up_to)
    found = prove_model(model, DEFAULT_LIMIT)
    proof, allowance = found if found is not None else (None, None)
    proved: int | str | None = None
    if proof is not None:
        proved = "unbounded" if proof.reliable is None else proof.reliable
    perfect = [epoch for epoch, acc in enumerate(trained.history, 1) if acc == 1.0]
    return SeedResult(
        row=row,
        seed=seed,
        kernels=label(trained.kernels),
        epochs_run=trained.epochs_run,
        epochs_to_perfect=perfect[0] if perfect else None,
        val_accuracy=trained.val_accuracy,
        accuracy_20=torch_exact_match(model, random_numbers(20, 1000, rng)),
        accuracy_25=torch_exact_match(model, random_numbers(25, 1000, rng)),
        longest_exact_run=scan.longest_exact_run,
        scanned_up_to=scan.scanned_up_to,
        proved=proved,
        wall_seconds=round(trained.wall_seconds, 1),
        reason="" if proof is None or proof.reliable is None else proof.reason,
        tanh_error_bound=allowance,
    )


def _load(path: Path) -> dict[tuple[str, int, str], SeedResult]:
    if not path.is_file():
        return {}
    results = (SeedResult(**json.loads(line)) for line in path.read_text().splitlines() if line)
    return {(r.row, r.seed, r.kernels): r for r in results}


def _spread(values: Sequence[float], fmt: str = "{:g}") -> str:
    """'min / median / max' of some numbers."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return " / ".join(fmt.format(v) for v in (low, mid, high))


def _run_length(value: int, scanned_up_to: int) -> str:
    """A longest exact run; "≥N" when no failure was found up to the scan's end N."""
    return f"≥{scanned_up_to}" if value >= scanned_up_to else str(value)


def _proved(values: Sequence[int | str]) -> str:
    """min / median / max of proved lengths, 'unbounded' counting as the largest."""
    order = sorted(values, key=lambda v: float("inf") if v == "unbounded" else float(v))
    picks = (order[0], order[(len(order) - 1) // 2], order[-1])
    return " / ".join(str(v) for v in picks)


def _proof_cell(result: SeedResult) -> str:
    """A seed's proved length, with the allowance it holds under where it is not the default."""
    if result.proved is None:
        return "n/a"
    bound = result.tanh_error_bound
    tight = bound is not None and bound != DEFAULT_TANH_ERROR
    return f"{result.proved} (allowance {bound:g})" if tight else str(result.proved)


def commands(results: Sequence[SeedResult], seeds: int, scan_up_to: int, out: str) -> list[str]:
    """The commands that made these results: one per kernels, with the rows it ran."""
    made = []
    for kernels_used in sorted({r.kernels for r in results}):
        mode, _, capability = kernels_used.partition(" ")
        rows = [
            row for row in ROWS if any((r.row, r.kernels) == (row, kernels_used) for r in results)
        ]
        command = f"python -m training reproduce --seeds {seeds} --scan-up-to {scan_up_to}"
        command += f" --kernels {mode} --rows {' '.join(rows)} --out {out}"
        if mode == "native":
            command = f"ATEN_CPU_CAPABILITY={capability.lower()} {command}"
        made.append(command)
    return made


def table(results: Sequence[SeedResult], seeds: int, scan_up_to: int, out: str) -> str:
    """The Markdown page: the summary table, the post's claims, and every seed."""
    lines = [
        '# Reproducing "Learning to count with RNNs"',
        "",
        f"Every figure below was produced by these commands (seeds 0..{seeds - 1} per row, "
        "1 torch thread, measured in torch), one per set of CPU kernels:",
        "",
        *[f"    {command}" for command in commands(results, seeds, scan_up_to, out)],
        "",
        "Exact match = every output digit right.",
        "Accuracy at 20 and 25 digits: 1000 random numbers each (first digit non-zero). "
        f"Longest exact run: the scan of every run of k <= {scan_up_to} nines, every next "
        "digit 0-8 and every 3-digit tail (`training/carry_scan.py`). Proved: the reliable "
        "carry length the certificate proves. Figures are min / median / max (with an even "
        "count of seeds, the lower middle one, so it is a seed's real value).",
        "Each seed's result is kept in a `.jsonl` file beside the page and reused by a rerun; "
        "delete it to retrain every seed.",
        "",
        "| row | kernels | seeds | reached 100% validation | epochs run (min / median / max) "
        "| accuracy at 20 digits | at 25 digits | longest exact run | proved | certified "
        "| train seconds (median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups = sorted({(r.row, r.kernels) for r in results}, key=lambda g: (ROWS.index(g[0]), g[1]))
    for row, kernels_used in groups:
        rows = [r for r in results if (r.row, r.kernels) == (row, kernels_used)]
        reached = [r for r in rows if r.epochs_to_perfect is not None]
        proved = [r.proved for r in rows if r.proved is not None]
        certified = [r.certified for r in rows if r.certified is not None]
        runs = sorted(r.longest_exact_run for r in rows)
        run = " / ".join(
            _run_length(v, scan_up_to) for v in (runs[0], statistics.median_low(runs), runs[-1])
        )
        lines.append(
            f"| {row} | {kernels_used} | {len(rows)} | {len(reached)}/{len(rows)} "
            f"| {_spread([r.epochs_run for r in rows])} "
            f"| {_spread([r.accuracy_20 for r in rows], '{:.3f}')} "
            f"| {_spread([r.accuracy_25 for r in rows], '{:.3f}')} "
            f"| {run} | {_proved(proved) if proved else 'n/a'} "
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
        "| row | kernels | seed | epochs run | first 100% epoch | validation | @20 | @25 "
        "| longest exact run | proved | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: (ROWS.index(r.row), r.kernels, r.seed)):
        lines.append(
            f"| {r.row} | {r.kernels} | {r.seed} | {r.epochs_run} | {r.epochs_to_perfect or '-'} "
            f"| {r.val_accuracy:.3f} | {r.accuracy_20:.3f} | {r.accuracy_25:.3f} "
            f"| {_run_length(r.longest_exact_run, r.scanned_up_to)} "
            f"| {_proof_cell(r)} | {r.wall_seconds} |"
        )
    refused = [r for r in results if r.row.startswith("robust") and r.certified is False]
    if refused:
        lines += ["", "Robust seeds the certificate did not certify, and what it said:", ""]
        lines += [
            f"- {r.row}, {r.kernels}, seed {r.seed}: "
            f"{r.reason or '(not recorded by the run that trained it)'}"
            for r in sorted(refused, key=lambda r: (ROWS.index(r.row), r.kernels, r.seed))
        ]
    return "\n".join(lines) + "\n"


def run(
    seeds: int,
    rows: Sequence[str] | None,
    scan_up_to: int,
    out: Path | None,
    mode: kernels.Mode = "portable",
    results_file: Path | None = None,
) -> str:
    """Run (or reuse) every (row, seed) under the current kernels; write and return the page.

    The page shows every result in the .jsonl file, so runs under other kernels (other
    ATEN_CPU_CAPABILITY values) appear beside this one.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    rows = list(rows or ROWS)
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise ValueError(f"unknown rows {unknown}; rows are {', '.join(ROWS)}")
    cache = results_file or (out.with_suffix(".jsonl") if out else None)
    done = _load(cache) if cache else {}
    used = label(kernels.describe(mode, 1).model_copy(update={"optimizer_step": "fused"}))
    for row in rows:
        for seed in range(seeds):
            result = done.get((row, seed, used))
            if result is None or result.scanned_up_to != scan_up_to:
                result = run_seed(row, seed, scan_up_to, mode)
                done[(row, seed, used)] = result
                if cache:
                    with cache.open("a") as file:
                        file.write(json.dumps(asdict(result)) + "\n")
            print(
                f"{row} seed {seed} ({used}): epochs {result.epochs_run}, "
                f"val {result.val_accuracy:.3f}, @20 {result.accuracy_20:.3f}, "
                f"exact run {_run_length(result.longest_exact_run, result.scanned_up_to)}, "
                f"proved {result.proved}, {result.wall_seconds} s",
                file=sys.stderr,
                flush=True,
            )
    results = [r for r in done.values() if r.scanned_up_to == scan_up_to and r.seed < seeds]
    text = table(results, seeds, scan_up_to, str(out) if out else "-")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        decided = decided_seeds.kept(out)  # written by `decide-seeds`: keep it
        # and the dynamics' seed table (python -m training explain-seeds) on the same page
        out.write_text(text + ("\n" + decided + "\n" if decided else "") + kept_section(out))
    else:
        print(text)
    return text
