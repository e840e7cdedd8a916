"""Training data: the post's split and the carry-rich one, seeded, distinct, in codec layout."""

import random

import pytest

from core.codec import carry_run, encode, target_digits
from training.data import (
    GATED_DATA,
    POST_DATA,
    ROBUST_DATA,
    DataSpec,
    batches,
    draw_number,
    make_split,
    to_tensors,
)


def test_post_split_has_the_posts_sizes_and_lengths() -> None:
    split = make_split(POST_DATA, seed=0)
    assert (len(split.train), len(split.val)) == (9000, 1000)
    assert {len(n) for n in split.train + split.val} == set(range(1, 11))


def test_no_duplicates_and_no_number_in_both_train_and_validation() -> None:
    split = make_split(POST_DATA, seed=1)
    everything = split.train + split.val
    assert len(set(everything)) == len(everything)


@pytest.mark.parametrize("spec", [ROBUST_DATA, GATED_DATA], ids=["robust", "gated"])
def test_numbers_are_canonical_decimals(spec: DataSpec) -> None:
    split = make_split(spec, seed=0)
    for number in split.train + split.val:
        assert number.isascii()
        assert number.isdigit()
        assert number == "0" or not number.startswith("0")


def test_same_seed_same_split_other_seed_other_split() -> None:
    assert make_split(ROBUST_DATA, seed=3) == make_split(ROBUST_DATA, seed=3)
    assert make_split(ROBUST_DATA, seed=3).train != make_split(ROBUST_DATA, seed=4).train


def test_carry_rich_share_and_longest_run() -> None:
    split = make_split(ROBUST_DATA, seed=0)
    runs = [carry_run(n) for n in split.train]
    # Carry-rich runs are uniform in 1..40, so 36/40 of the carry-rich third end in >= 5 nines;
    # a plain number does so with probability 1e-5.
    long_share = sum(run >= 5 for run in runs) / len(runs)
    assert long_share == pytest.approx(ROBUST_DATA.carry_rich_share * 36 / 40, abs=0.03)
    assert max(runs) == ROBUST_DATA.max_carry_run


def _inner_run(number: str) -> int:
    """The longest run of nines followed by another digit (copied, not carried)."""
    longest, current = 0, 0
    for digit in number.rstrip("9"):
        current = current + 1 if digit == "9" else 0
        longest = max(longest, current)
    return longest


def test_gated_data_adds_inner_runs_of_nines_and_keeps_the_carry_rich_share() -> None:
    split = make_split(GATED_DATA, seed=0)
    inner = [_inner_run(n) for n in split.train]
    # inner runs are uniform in 1..40: 36/40 of the inner fifth have >= 5; plain numbers rarely
    long_share = sum(run >= 5 for run in inner) / len(inner)
    assert long_share == pytest.approx(GATED_DATA.inner_nines_share * 36 / 40, abs=0.03)
    assert max(inner) == GATED_DATA.max_carry_run
    trailing = sum(carry_run(n) >= 5 for n in split.train) / len(split.train)
    assert trailing == pytest.approx(GATED_DATA.carry_rich_share * 36 / 40, abs=0.03)
    robust = make_split(ROBUST_DATA, seed=0).train
    assert sum(_inner_run(n) >= 5 for n in robust) / len(robust) < 0.01


def test_post_data_has_no_carry_rich_examples() -> None:
    rng = random.Random(0)
    runs = [carry_run(draw_number(rng, POST_DATA)) for _ in range(5000)]
    assert max(runs) <= 10
    assert sum(run >= 3 for run in runs) / len(runs) < 0.01


def test_tensors_follow_the_codec_with_zero_padding() -> None:
    digits, labels = to_tensors(["1299", "9"])
    assert digits.tolist() == [encode("1299").tolist(), [9, 0, 0, 0, 0]]
    assert labels[0].tolist() == target_digits("1299").tolist()  # 1300 -> [0, 0, 3, 1, 0]
    assert labels[1].tolist() == [0, 1, 0, 0, 0]  # 9 + 1 = 10, then leading zeros


def test_batches_cover_every_number_once() -> None:
    numbers = [str(n) for n in range(1, 101)]
    seen = []
    for digits, _ in batches(numbers, batch_size=32):
        assert digits.shape[0] <= 32
        seen.extend(digits.tolist())
    assert len(seen) == 100


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_digits": 0},
        {"min_digits": 5, "max_digits": 4},
        {"carry_rich_share": 1.5},
        {"carry_rich_share": 0.5, "max_carry_run": 0},
        {"inner_nines_share": 0.5, "max_carry_run": 0},
        {"carry_rich_share": 0.6, "inner_nines_share": 0.5, "max_carry_run": 3},
        {"inner_nines_share": -0.1},
        {"train_size": 0},
    ],
)
def test_bad_specs_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        DataSpec(**kwargs)  # type: ignore[arg-type]


def test_impossible_split_is_refused() -> None:
    # Only 10 one-digit numbers exist.
    with pytest.raises(ValueError, match="distinct"):
        make_split(DataSpec(train_size=9, val_size=5, max_digits=1), seed=0)
