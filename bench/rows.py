"""The engine's two readings of a run's rows (app.runtime.engine._Rows: plain Python for a
few short rows, numpy for more), side by side for batches of each shape; where the cheaper one
changes places the engine's _SMALL_ROWS and _SMALL_RUN.

    python -m bench.rows [--rounds 5]
"""

import argparse
import statistics
import timeit
from unittest import mock

import numpy as np

from app.runtime import engine
from app.runtime.registry import load_model
from app.settings import DEFAULT_MODELS_DIR
from core.codec import encode_batch

LENGTHS = (3, 10, 20, 40, 80)
ROWS = (1, 2, 4, 6, 8, 12, 16)


def reading_us(numbers: list[str], probs: np.ndarray, small: bool, rounds: int) -> float:
    """Median microseconds of one reading, the engine's rule forced one way."""
    digits = encode_batch(numbers)
    limits = (10**9, 10**9) if small else (0, 0)
    with mock.patch.multiple(engine, _SMALL_ROWS=limits[0], _SMALL_RUN=limits[1]):
        times = timeit.repeat(
            lambda: engine._Rows(numbers, digits, probs, 0.9), number=500, repeat=rounds
        )
    return statistics.median(times) / 500 * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    model = load_model(DEFAULT_MODELS_DIR / "counter.json", 64 << 20)
    rng = np.random.default_rng(0)
    print(f"`python -m bench.rows --rounds {args.rounds}`: µs per reading, medians\n")
    print("| digits | rows | cells | plain Python | numpy | the engine reads |")
    print("| --- | --- | --- | --- | --- | --- |")
    for length in LENGTHS:
        for rows in ROWS:
            numbers = ["".join(map(str, rng.integers(1, 10, length))) for _ in range(rows)]
            probs = model.run(encode_batch(numbers))
            small = reading_us(numbers, probs, True, args.rounds)
            large = reading_us(numbers, probs, False, args.rounds)
            cells = rows * (length + 1)
            chosen = (
                "Python" if rows <= engine._SMALL_ROWS and cells <= engine._SMALL_RUN else "numpy"
            )
            print(f"| {length} | {rows} | {cells} | {small:.0f} | {large:.0f} | {chosen} |")


if __name__ == "__main__":
    main()
