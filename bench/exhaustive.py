"""Exhaustive check of the shipped models: every number below 10^7, and every "t d 9^k" with a
3-digit tail t, a digit d in 0-8 and k <= 40 nines, run in onnxruntime as the service runs it.

For each answer: is it right (exact n + 1), and does the service call it proved (the proved
carry length the service re-derives at load, its walked certificate checked, covers the input's
run of trailing nines)? A proved answer that is wrong would be a broken promise: the script
exits 1 if it finds one.

    python -m bench.exhaustive [--models counter counter-post] [--below 10000000]
"""

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.runtime.registry import load_model

MODELS = Path(__file__).resolve().parents[1] / "models"
Ints = npt.NDArray[np.int64]


def _digits(values: Ints, width: int) -> Ints:
    """Numbers -> their digits, least significant first, `width` columns (zero padded)."""
    powers = 10 ** np.arange(width, dtype=np.int64)
    result: Ints = (values[:, None] // powers) % 10
    return result


def _trailing_nines(digits: Ints) -> Ints:
    """Per row, how many nines it starts with (least significant first)."""
    not_nine = digits != 9
    first: Ints = np.where(not_nine.any(axis=1), not_nine.argmax(axis=1), digits.shape[1])
    return first.astype(np.int64)


def below(limit: int) -> Iterator[tuple[Ints, Ints]]:
    """(inputs, expected) digit rows for every number below limit, grouped by length, each with
    its extra zero step; inputs and n + 1 without leading zeros beyond the number's own."""
    for length in range(1, len(str(limit - 1)) + 1):
        low, high = (0 if length == 1 else 10 ** (length - 1)), min(10**length, limit)
        for start in range(low, high, 1_000_000):
            values = np.arange(start, min(start + 1_000_000, high), dtype=np.int64)
            yield _digits(values, length + 1), _digits(values + 1, length + 1)


def carries(max_nines: int) -> Iterator[tuple[Ints, Ints]]:
    """(inputs, expected) for every "t d 9^k": tail t of 3 digits, d in 0-8, k <= max_nines."""
    tails = np.arange(1000, dtype=np.int64)
    for k in range(max_nines + 1):
        for d in range(9):
            rows = np.zeros((1000, k + 5), dtype=np.int64)
            rows[:, :k] = 9
            rows[:, k] = d
            rows[:, k + 1 : k + 4] = _digits(tails, 3)
            expected = rows.copy()
            expected[:, :k] = 0
            expected[:, k] = d + 1
            yield rows, expected


def check(name: str, limit: int, max_nines: int) -> tuple[str, int, int, int, int]:
    """(proved carry length, answers, wrong, proved, proved and wrong) for one shipped model,
    loaded as the service loads it (every check run, the walked certificate's too)."""
    model = load_model(MODELS / f"{name}.json", 1 << 30, walked="check")
    session, reliable = model.session, model.card.reliable_carry
    answers = wrong = proved = broken = 0
    for source in (below(limit), carries(max_nines)):
        for inputs, expected in source:
            (probs,) = session.run(None, {"digits": inputs})
            right = (np.asarray(probs).argmax(axis=-1) == expected).all(axis=1)
            runs = _trailing_nines(inputs)
            covered = np.ones_like(right) if reliable is None else runs <= reliable
            answers += right.size
            wrong += int((~right).sum())
            proved += int(covered.sum())
            broken += int((covered & ~right).sum())
    return str(model.card.metrics.reliable_carry_length), answers, wrong, proved, broken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["counter", "counter-post"])
    parser.add_argument("--below", type=int, default=10**7, help="every number below this")
    parser.add_argument("--nines", type=int, default=40, help="k <= this in 't d 9^k'")
    args = parser.parse_args()
    command = " ".join(["python -m bench.exhaustive", *sys.argv[1:]])
    print(f"`{command}`\n")
    print("| model | proved carry length | answers | wrong | proved | proved and wrong | s |")
    print("|---|---|---|---|---|---|---|")
    failed = False
    for name in args.models:
        began = time.perf_counter()
        reliable, answers, wrong, proved, broken = check(name, args.below, args.nines)
        print(
            f"| {name} | {reliable} | {answers:,} | {wrong:,} "
            f"| {proved:,} | {broken} | {time.perf_counter() - began:.0f} |",
            flush=True,
        )
        failed |= broken > 0
    if failed:
        sys.exit("a proved answer was wrong: the proof or the service is broken")


if __name__ == "__main__":
    main()
