"""The codec both sides share: layout, round trips, and exact n + 1 at any length."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.codec import (
    add_one,
    add_one_digits,
    decode,
    encode,
    encode_batch,
    is_ascii_digits,
    target_digits,
)


def test_encode_is_least_significant_first_with_one_extra_zero() -> None:
    assert encode("1299").tolist() == [9, 9, 2, 1, 0]
    assert encode("1299").dtype == np.int64


def test_batch_pads_with_zeros_to_longest_plus_one() -> None:
    assert encode_batch(["12", "3"]).tolist() == [[2, 1, 0], [3, 0, 0]]


@pytest.mark.parametrize(
    "text", ["", " 1", "-1", "+1", "1.0", "1e3", "1_000", "١٢٣", "１２３", "²"]
)
def test_rejects_anything_but_ascii_digits(text: str) -> None:
    assert not is_ascii_digits(text)
    with pytest.raises(ValueError, match="ASCII digits"):
        encode_batch(["1", text])


def test_decode_is_canonical() -> None:
    assert decode([0, 0, 0, 1]) == "1000"
    assert decode([0, 0]) == "0"
    assert decode([8, 0, 0, 0]) == "8"


def test_add_one_carries_through_any_run_of_nines() -> None:
    assert add_one("9" * 100_000) == "1" + "0" * 100_000
    assert add_one("1476233999") == "1476234000"
    assert add_one("007") == "8"
    assert add_one("0") == "1"


def test_target_keeps_the_input_layout_even_with_leading_zeros() -> None:
    assert target_digits("999").tolist() == [0, 0, 0, 1]
    assert target_digits("007").tolist() == [8, 0, 0, 0]


@given(st.integers(min_value=0, max_value=10**60))
def test_round_trip_and_exact_increment(n: int) -> None:
    text = str(n)
    assert decode(encode(text)) == text
    assert add_one(text) == str(n + 1)
    assert decode(target_digits(text)) == str(n + 1)


@given(st.lists(st.text("0123456789", min_size=1, max_size=30), min_size=1, max_size=20))
def test_a_batch_encodes_row_by_row_and_adds_one_to_every_row(numbers: list[str]) -> None:
    batch = encode_batch(numbers)
    for row, number in enumerate(numbers):
        assert batch[row].tolist() == encode_batch([number], batch.shape[1])[0].tolist()
    width = max(len(n) for n in numbers) + 1
    want = [target_digits(n).tolist() + [0] * (width - len(n) - 1) for n in numbers]
    assert add_one_digits(batch).tolist() == want


def test_same_length_numbers_encode_as_one_block() -> None:
    assert encode_batch(["129", "999", "007"]).tolist() == [
        [9, 2, 1, 0],
        [9, 9, 9, 0],
        [7, 0, 0, 0],
    ]
    assert add_one_digits(encode_batch(["129", "999", "007"])).tolist() == [
        [0, 3, 1, 0],
        [0, 0, 0, 1],
        [8, 0, 0, 0],
    ]
