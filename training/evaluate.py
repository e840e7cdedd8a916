"""Exact whole-number accuracy of an exported model: on given numbers and by input length.

Everything here runs the deployed arithmetic (an onnxruntime session on the exported ONNX
file) through one small interface, a `Predictor`: int64 digits [batch, time] in, float32
probabilities [batch, time, 10] out. No torch.

A number counts as right only if every output digit is: decode(argmax) == n + 1 exactly.
"""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from core.card import LengthAccuracy
from core.codec import add_one, decode, encode_batch
from core.session import open_session

Predictor = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.float32]]

DEFAULT_LENGTHS: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 1000, 10_000, 100_000)

# Digit-steps per model call: bounds the probabilities array at 10 * 4 bytes * this (~80 MB).
MAX_BATCH_DIGITS = 2_000_000


def default_samples(length: int) -> int:
    """How many random numbers accuracy_by_length draws at one length (fewer when long)."""
    if length <= 200:
        return 1000
    if length <= 1000:
        return 200
    if length <= 10_000:
        return 20
    return 5


def ort_session(model: str | Path | onnx.ModelProto) -> ort.InferenceSession:
    """An onnxruntime session with the service's options: what is measured is what is served."""
    return open_session(model.SerializeToString() if isinstance(model, onnx.ModelProto) else model)


def ort_predictor(model: str | Path | onnx.ModelProto | ort.InferenceSession) -> Predictor:
    """Wrap an ONNX file, a loaded graph or an open session with the model contract."""
    session = model if isinstance(model, ort.InferenceSession) else ort_session(model)

    def predict(digits: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        (probabilities,) = session.run(["probabilities"], {"digits": digits})
        return np.asarray(probabilities, dtype=np.float32)

    return predict


def _right(predict: Predictor, numbers: Sequence[str]) -> int:
    """How many numbers the model gets exactly right; one model call per batch."""
    digits = encode_batch(numbers)  # (B, longest + 1)
    chosen = predict(digits).argmax(axis=-1)  # (B, T)
    # The first len + 1 outputs are the model's answer for that number alone: the network
    # is causal, so the zero padding after them cannot change them.
    return sum(
        decode(chosen[row, : len(number) + 1]) == add_one(number)
        for row, number in enumerate(numbers)
    )


def _count_right(predict: Predictor, numbers: Sequence[str]) -> int:
    """_right over batches of at most MAX_BATCH_DIGITS digit-steps."""
    right, start = 0, 0
    while start < len(numbers):
        longest = len(numbers[start]) + 1
        stop = start + 1
        while stop < len(numbers):
            longest = max(longest, len(numbers[stop]) + 1)
            if longest * (stop - start + 1) > MAX_BATCH_DIGITS:
                break
            stop += 1
        right += _right(predict, numbers[start:stop])
        start = stop
    return right


def exact_match(predict: Predictor, numbers: Sequence[str]) -> float:
    """Share of numbers whose whole output is exactly n + 1 (train or validation accuracy)."""
    if not numbers:
        raise ValueError("exact_match needs at least one number")
    ordered = sorted(numbers, key=len)  # similar lengths share a batch: less padding
    return _count_right(predict, ordered) / len(ordered)


def random_numbers(length: int, count: int, rng: np.random.Generator) -> list[str]:
    """count random numbers of exactly `length` digits, first digit non-zero."""
    if length < 1 or count < 1:
        raise ValueError(f"need length >= 1 and count >= 1, got {length} and {count}")
    digits = rng.integers(0, 10, size=(count, length), dtype=np.uint8)
    digits[:, 0] = rng.integers(1, 10, size=count, dtype=np.uint8)
    text = (digits + ord("0")).tobytes().decode("ascii")
    return [text[row * length : (row + 1) * length] for row in range(count)]


def accuracy_by_length(
    predict: Predictor,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    seed: int = 0,
    samples: Mapping[int, int] | None = None,
) -> list[LengthAccuracy]:
    """Exact match on random numbers of each length; samples per length from default_samples.

    `samples` overrides the count for the lengths it names. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    results = []
    for length in lengths:
        count = (samples or {}).get(length, default_samples(length))
        numbers = random_numbers(length, count, rng)
        correct = _count_right(predict, numbers)
        results.append(
            LengthAccuracy(length=length, samples=count, correct=correct, accuracy=correct / count)
        )
    return results


def tested_length(results: Sequence[LengthAccuracy]) -> int:
    """Longest tested length such that every tested length up to it was exact (0: none)."""
    longest = 0
    for result in sorted(results, key=lambda r: r.length):
        if result.correct != result.samples:
            break
        longest = result.length
    return longest
