"""The model card's plot: accuracy by length, and the right digit's probability along runs of
nines with where the scan found wrong answers and how far the proof reaches."""

from pathlib import Path

import matplotlib
import numpy as np
import numpy.typing as npt

from core.card import Metrics
from training import evaluate

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: no display needed

Array = npt.NDArray[np.float32]
# Longest run of nines drawn in the plot's second panel.
PLOT_NINES = 200
# Okabe-Ito colours, told apart with any colour vision; lines also differ in style.
BLUE, ORANGE, VERMILLION, GREY = "#0072B2", "#E69F00", "#D55E00", "#999999"


def carry_probabilities(predict: evaluate.Predictor, up_to: int) -> tuple[Array, Array]:
    """The right digit's probability along runs of k = 0..up_to nines, worst case over d.

    Returns (while, end), each (up_to + 1,): `while[k]` the smallest P(0) on the k nines
    themselves, `end[k]` the smallest P(d + 1) where "k nines then d" ends the carry.
    """
    ks = np.arange(up_to + 1)
    rows = np.zeros((9 * ks.size, up_to + 2), dtype=np.int64)  # (9 (k, d) pairs, time)
    rows_k, rows_d = np.repeat(ks, 9), np.tile(np.arange(9), ks.size)
    rows[np.arange(up_to + 2)[None, :] < rows_k[:, None]] = 9
    rows[np.arange(rows_k.size), rows_k] = rows_d
    probs = predict(rows)  # (9 (k, d), time, 10)
    end = probs[np.arange(rows_k.size), rows_k, rows_d + 1].reshape(ks.size, 9).min(axis=1)
    nines = probs[-1, :up_to, 0]  # the longest row reads up_to nines first
    during = np.minimum.accumulate(np.concatenate([[1.0], nines]))  # (up_to + 1,)
    return during, end


def plot(path: Path, title: str, metrics: Metrics, predict: evaluate.Predictor) -> None:
    """Two panels: accuracy by length, and the right digit's probability along runs of nines."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    by_length, reliable = metrics.accuracy_by_length, metrics.reliable_carry_length
    places = np.arange(len(by_length))
    left.plot(places, [r.accuracy for r in by_length], "o-", color=BLUE)
    left.set_xticks(places, [f"{r.length:,}\n{r.samples}" for r in by_length], fontsize=7)
    left.set_ylim(-0.05, 1.08)
    left.set_xlabel("digits in the number (top) and numbers drawn (bottom)")
    left.set_ylabel("exact-match accuracy")
    left.set_title("Accuracy by length (random numbers)")
    left.grid(alpha=0.3)

    during, end = carry_probabilities(predict, PLOT_NINES)
    ks = np.arange(PLOT_NINES + 1)
    right.plot(ks, end, color=BLUE, label="P(d + 1) where the carry ends, worst d")
    right.plot(ks, during, color=ORANGE, ls="--", label="P(0) on the nines, worst so far")
    right.axhline(0.5, color=GREY, lw=0.6)
    failing = [k for first, last in metrics.carry_scan.failing_runs for k in range(first, last + 1)]
    failing = [k for k in failing if k <= PLOT_NINES]
    if failing:
        right.plot(failing, [0.0] * len(failing), "|", color=VERMILLION, ms=10, label="scan: wrong")
    if isinstance(reliable, int) and reliable < PLOT_NINES:
        right.axvline(reliable + 0.5, color=VERMILLION, ls=":", label=f"proved up to: {reliable}")
    right.set_ylim(-0.05, 1.05)
    right.set_xlabel("k trailing nines, then a digit d in 0-8")
    right.set_ylabel("probability of the right digit")
    right.set_title(f"Carrying through k nines (proved reliable carry length: {reliable})")
    right.legend(loc="center right", fontsize=8)
    right.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
