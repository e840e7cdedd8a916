"""Training data: the post's numbers and the carry-rich recipe, generated from a seed.

A `DataSpec` says what to draw; `make_split` draws train and validation numbers (no duplicates,
none shared between the two) and `batches` turns numbers into (digits, labels) tensors through
the one codec, `core.codec`, so training sees exactly the layout the service sends.
"""

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch

from core.codec import add_one, encode_batch


@dataclass(frozen=True)
class DataSpec:
    """What numbers to draw.

    Plain numbers have a uniform length in [min_digits, max_digits], first digit non-zero.
    A `carry_rich_share` of the examples instead end in a run of k nines, k uniform in
    [1, max_carry_run], after a plain prefix (possibly empty) of a uniform length in
    [0, max_digits - 1] whose last digit is not 9, so the run is exactly k long.
    An `inner_nines_share` have such a run inside: a plain prefix (possibly empty), k nines, a
    digit 0-8, then any digits (up to max_digits - 1 of them). Adding one spends its carry
    before the run, so the run is copied: a cell that keeps "no carry" in a slowly leaking
    memory gets such runs wrong once they are long, which numbers with trailing runs never show.
    """

    train_size: int = 9000
    val_size: int = 1000
    min_digits: int = 1
    max_digits: int = 10
    carry_rich_share: float = 0.0
    max_carry_run: int = 0
    inner_nines_share: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_digits <= self.max_digits:
            raise ValueError(f"need 1 <= min_digits <= max_digits, got {self}")
        if not 0.0 <= self.carry_rich_share <= 1.0:
            raise ValueError(f"carry_rich_share must be in [0, 1], got {self.carry_rich_share}")
        if not 0.0 <= self.inner_nines_share <= 1.0 - self.carry_rich_share:
            raise ValueError(
                "inner_nines_share must be in [0, 1 - carry_rich_share], got "
                f"{self.inner_nines_share}"
            )
        if (self.carry_rich_share > 0 or self.inner_nines_share > 0) and self.max_carry_run < 1:
            raise ValueError("a carry-rich or inner-nines share needs max_carry_run >= 1")
        if self.train_size < 1 or self.val_size < 1:
            raise ValueError("train_size and val_size must be positive")


# The post: 9K train / 1K validation, numbers of 1-10 digits.
POST_DATA = DataSpec()
# Carry-rich: a third of the examples end in runs of up to 40 nines, plain lengths up to 20.
ROBUST_DATA = DataSpec(max_digits=20, carry_rich_share=1 / 3, max_carry_run=40)
# For gated cells, a fifth more have runs of up to 40 nines inside, which are copied.
GATED_DATA = replace(ROBUST_DATA, inner_nines_share=0.2)


@dataclass(frozen=True)
class Split:
    """Train and validation numbers as decimal strings (most significant digit first)."""

    train: list[str]
    val: list[str]


def _plain(rng: random.Random, length: int) -> str:
    if length == 0:
        return ""
    head = str(rng.randint(1, 9)) if length > 1 else str(rng.randint(0, 9))
    return head + "".join(str(rng.randint(0, 9)) for _ in range(length - 1))


def _prefix_and_run(rng: random.Random, spec: DataSpec) -> tuple[str, int]:
    """A run length of nines and the digits before it, whose last digit stops the run (anything
    but 9), so the run is exactly that long; a lone prefix digit stays non-zero."""
    run = rng.randint(1, spec.max_carry_run)
    prefix = _plain(rng, rng.randint(0, spec.max_digits - 1))
    if prefix:
        low = 1 if len(prefix) == 1 else 0
        prefix = prefix[:-1] + str(rng.randint(low, 8))
    return prefix, run


def _carry_rich(rng: random.Random, spec: DataSpec) -> str:
    prefix, run = _prefix_and_run(rng, spec)
    return prefix + "9" * run


def _inner_nines(rng: random.Random, spec: DataSpec) -> str:
    prefix, run = _prefix_and_run(rng, spec)
    after = str(rng.randint(0, 8))  # the run ends here, read with no carry left
    tail = "".join(str(rng.randint(0, 9)) for _ in range(rng.randint(0, spec.max_digits - 1)))
    return prefix + "9" * run + after + tail


def draw_number(rng: random.Random, spec: DataSpec) -> str:
    """One number of the spec's distribution."""
    if spec.carry_rich_share > 0 or spec.inner_nines_share > 0:
        kind = rng.random()
        if kind < spec.carry_rich_share:
            return _carry_rich(rng, spec)
        if kind < spec.carry_rich_share + spec.inner_nines_share:
            return _inner_nines(rng, spec)
    return _plain(rng, rng.randint(spec.min_digits, spec.max_digits))


def make_split(spec: DataSpec, seed: int) -> Split:
    """Distinct numbers for train and validation, the same for the same seed."""
    rng = random.Random(seed)
    wanted = spec.train_size + spec.val_size
    seen: set[str] = set()
    numbers: list[str] = []
    attempts = 0
    while len(numbers) < wanted:
        attempts += 1
        if attempts > 100 * wanted:
            raise ValueError(f"cannot draw {wanted} distinct numbers from {spec}")
        number = draw_number(rng, spec)
        if number not in seen:
            seen.add(number)
            numbers.append(number)
    return Split(train=numbers[: spec.train_size], val=numbers[spec.train_size :])


def to_tensors(numbers: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Numbers -> (digits, labels), both int64 [B, T] with T = longest + 1, zero padded."""
    digits = encode_batch(numbers)
    # Padding is leading zeros of the number, so n + 1 padded the same way is the label.
    labels = encode_batch([add_one(n) for n in numbers], width=digits.shape[1])
    return torch.from_numpy(digits), torch.from_numpy(labels)


def batches(
    numbers: Sequence[str], batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled (when given a generator) mini-batches, each padded to its own longest number."""
    order = (
        torch.randperm(len(numbers), generator=generator).tolist()
        if generator is not None
        else list(range(len(numbers)))
    )
    for start in range(0, len(order), batch_size):
        yield to_tensors([numbers[i] for i in order[start : start + batch_size]])
