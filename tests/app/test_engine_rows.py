"""The engine reads a run two ways (plain Python for small runs, numpy for large ones): both must
say the same of every row, down to the float32 of the weakest step."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.runtime import engine
from core.codec import add_one, encode_batch, target_digits

numbers = st.lists(st.text("0123456789", min_size=1, max_size=30), min_size=1, max_size=8)


@settings(max_examples=80, deadline=None)
@given(numbers, st.integers(0, 2**32 - 1), st.sampled_from([0.5, 0.9, 0.99]))
def test_small_and_large_runs_read_the_same(asked: list[str], seed: int, threshold: float) -> None:
    digits = encode_batch(asked)
    rng = np.random.default_rng(seed)
    # Probabilities that are often right (the exact n + 1 digit gets a boost) and sometimes
    # tied or below the threshold, so every field is exercised.
    probs = rng.random((len(asked), digits.shape[1], 10), dtype=np.float32)
    for row, number in enumerate(asked):
        exact = target_digits(number)
        if rng.random() < 0.7:
            probs[row, np.arange(len(number) + 1), exact] += np.float32(rng.random() * 20)
    probs[:, :, 3] = np.round(probs[:, :, 3], 1)  # some ties, some values on the threshold
    probs[:, :, 7] = np.float32(threshold)

    old = engine._SMALL_RUN
    try:
        engine._SMALL_RUN = 10**9
        small = engine._Rows(asked, digits, probs, threshold)
        engine._SMALL_RUN = 0
        large = engine._Rows(asked, digits, probs, threshold)
    finally:
        engine._SMALL_RUN = old

    for row, number in enumerate(asked):
        assert small.outputs[row] == large.outputs[row]
        assert small.correct[row] == large.correct[row] == (small.outputs[row] == add_one(number))
        assert small.weakest[row] == large.weakest[row]
        assert small.weakest_p[row] == large.weakest_p[row]
        assert type(small.weakest_p[row]) is type(large.weakest_p[row]) is np.float32
        assert small.low_counts[row] == large.low_counts[row]
