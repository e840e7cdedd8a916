"""Exact accuracy on the exported model: by length, on given numbers, and the tested length."""

from pathlib import Path

import numpy as np
import pytest

from core.card import LengthAccuracy
from core.codec import add_one
from tests.training.hand_counter import (
    add_one_by_network,
    export_weights,
    hand_counter,
    with_carry_self_weight,
)
from training.evaluate import (
    DEFAULT_LENGTHS,
    accuracy_by_length,
    default_samples,
    exact_match,
    ort_predictor,
    random_numbers,
)
from training.evaluate import (
    tested_length as longest_exact_length,  # alias: pytest would collect test*
)


@pytest.fixture(scope="module")
def exact_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "exact.onnx"
    export_weights(hand_counter(), str(path))
    return path


@pytest.fixture(scope="module")
def forgetful_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "forgetful.onnx"
    export_weights(with_carry_self_weight(0.0), str(path))
    return path


def test_random_numbers_have_exact_length_and_no_leading_zero() -> None:
    numbers = random_numbers(7, 500, np.random.default_rng(0))
    assert all(len(n) == 7 and n[0] != "0" and n.isdigit() for n in numbers)
    assert len(set(numbers)) > 400  # random, not one number repeated
    assert numbers == random_numbers(7, 500, np.random.default_rng(0))


@pytest.mark.slow
def test_exact_counter_is_right_at_every_default_length_up_to_100000(exact_onnx: Path) -> None:
    results = accuracy_by_length(ort_predictor(exact_onnx))
    assert [r.length for r in results] == list(DEFAULT_LENGTHS)
    assert [r.samples for r in results] == [default_samples(n) for n in DEFAULT_LENGTHS]
    assert all(r.correct == r.samples and r.accuracy == 1.0 for r in results)
    assert longest_exact_length(results) == 100_000


def test_accuracy_counts_what_the_network_really_gets_right(forgetful_onnx: Path) -> None:
    lengths, seed = (1, 2, 5), 3
    results = accuracy_by_length(ort_predictor(forgetful_onnx), lengths, seed=seed)
    # Redraw the same numbers and ask an independent float64 forward pass.
    rng = np.random.default_rng(seed)
    for result in results:
        numbers = random_numbers(result.length, result.samples, rng)
        answers = add_one_by_network(with_carry_self_weight(0.0), numbers)
        assert result.correct == sum(a == add_one(n) for a, n in zip(answers, numbers, strict=True))
        assert result.accuracy == result.correct / result.samples
    assert results[0].accuracy == 1.0  # one digit: a 9 with carry in is the only carry
    assert results[1].accuracy < 1.0  # 9x: the 9 carries with no carry in
    assert longest_exact_length(results) == 1


def test_samples_can_be_chosen_per_length(exact_onnx: Path) -> None:
    results = accuracy_by_length(ort_predictor(exact_onnx), (3, 40), samples={40: 7})
    assert [(r.length, r.samples) for r in results] == [(3, default_samples(3)), (40, 7)]


def test_exact_match_mixes_lengths_in_one_batch(forgetful_onnx: Path) -> None:
    numbers = ["0", "9", "90", "99", "1299", "9" * 30, "123", "8" * 12, "909"]
    answers = add_one_by_network(with_carry_self_weight(0.0), numbers)
    expected = sum(a == add_one(n) for a, n in zip(answers, numbers, strict=True)) / len(numbers)
    assert 0 < expected < 1  # the list holds both kinds
    assert exact_match(ort_predictor(forgetful_onnx), numbers) == expected


def test_exact_match_of_the_exact_counter_is_one(exact_onnx: Path) -> None:
    numbers = [*random_numbers(12, 300, np.random.default_rng(5)), "0", "9", "999"]
    assert exact_match(ort_predictor(exact_onnx), numbers) == 1.0


def test_exact_match_needs_numbers(exact_onnx: Path) -> None:
    with pytest.raises(ValueError, match="at least one number"):
        exact_match(ort_predictor(exact_onnx), [])


def _result(length: int, correct: int, samples: int = 10) -> LengthAccuracy:
    return LengthAccuracy(
        length=length, samples=samples, correct=correct, accuracy=correct / samples
    )


def test_tested_length_stops_at_the_first_imperfect_length() -> None:
    results = [_result(1, 10), _result(2, 10), _result(5, 9), _result(10, 10)]
    assert longest_exact_length(results) == 2
    assert longest_exact_length(list(reversed(results))) == 2  # order of the list does not matter
    assert longest_exact_length([_result(1, 9), _result(2, 10)]) == 0
    assert longest_exact_length([_result(1, 10), _result(1000, 10)]) == 1000
