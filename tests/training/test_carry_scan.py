"""The exact carry scan: agrees with running every whole number, in numpy and in onnxruntime."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from torch import nn

from core.codec import add_one, carry_run, decode, encode_batch, target_digits
from core.weights import RnnWeights
from tests.training.hand_counter import (
    NumpyCarryEngine,
    export_onnx,
    export_weights,
    hand_counter,
    leaky_counter,
    run,
    windowed_counter,
    with_carry_self_weight,
)
from training.carry_scan import OnnxCarryEngine, scan_carries
from training.evaluate import ort_predictor

MODELS = Path(__file__).resolve().parents[2] / "models"
OutputDigits = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.int64]]


def brute_force(output_digits: OutputDigits, up_to: int, tail: int) -> set[int]:
    """The definition run literally on whole numbers: for every k, every "t d 9..9" with d in
    0-8 and every tail t of `tail` digits; k fails if any output digit up to t is wrong."""
    failing = set()
    tails = [str(t).zfill(tail) if tail else "" for t in range(10**tail)]
    for k in range(up_to + 1):
        numbers = [t + str(d) + "9" * k for d in range(9) for t in tails]
        got = output_digits(encode_batch(numbers))
        for row, number in enumerate(numbers):
            if not np.array_equal(got[row, : len(number)], target_digits(number)[: len(number)]):
                failing.add(k)
                break
    return failing


def _expanded(runs: list[tuple[int, int]]) -> set[int]:
    return {k for first, last in runs for k in range(first, last + 1)}


def _numpy_digits(weights: RnnWeights) -> OutputDigits:
    return lambda digits: run(weights, digits)[0]


def _onnx_digits(path: Path) -> OutputDigits:
    predict = ort_predictor(path)
    return lambda digits: predict(digits).argmax(axis=-1)


class _Cell(nn.Module):
    """A random recurrent cell with the exported model's shape (one-hot in, softmax out)."""

    def __init__(self, cell: type[nn.RNN | nn.GRU | nn.LSTM], layers: int = 1) -> None:
        super().__init__()
        self.rnn = cell(10, 12, num_layers=layers, batch_first=True)
        self.out = nn.Linear(12, 10)

    def forward(self, digits: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(nn.functional.one_hot(digits, 10).float())
        return torch.softmax(self.out(hidden), dim=-1)


@pytest.fixture(scope="module")
def leaky_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "leaky.onnx"
    export_weights(leaky_counter(), str(path))
    return path


@pytest.mark.parametrize(
    "weights",
    [hand_counter(), leaky_counter(), with_carry_self_weight(-20.0), with_carry_self_weight(0)],
    ids=["exact", "leaky", "flipped-carry", "forgetful-carry"],
)
def test_numpy_scan_agrees_with_brute_force(weights: RnnWeights) -> None:
    scan = scan_carries(NumpyCarryEngine(weights), 30, tail=2)
    failing = brute_force(_numpy_digits(weights), 30, tail=2)
    assert _expanded(scan.failing_runs) == failing
    assert scan.longest_exact_run == (min(failing) - 1 if failing else 30)
    assert scan.scanned_up_to == 30
    assert scan.cases == 31 * 9 * 100


def test_onnx_scan_agrees_with_brute_force_and_names_a_real_failure(leaky_onnx: Path) -> None:
    scan = scan_carries(OnnxCarryEngine(leaky_onnx), 40, tail=1)
    failing = brute_force(_onnx_digits(leaky_onnx), 40, tail=1)
    assert 5 < min(failing) < 40  # the fixture fails somewhere in the middle
    assert _expanded(scan.failing_runs) == failing
    assert scan.engine.startswith("onnxruntime")
    failure = scan.first_failure
    assert failure is not None
    assert failure.nines == min(failing)
    assert carry_run(failure.example) == failure.nines
    assert failure.expected == add_one(failure.example)
    # The model really answers the example wrong, as the card will say.
    predict = ort_predictor(leaky_onnx)
    digits = encode_batch([failure.example])
    assert decode(predict(digits).argmax(axis=-1)[0]) == failure.got != failure.expected


def test_every_failing_k_is_listed_when_failures_are_not_monotone() -> None:
    """A net wrong only for a middle window of runs: right below it and right again above."""
    windowed = windowed_counter()
    scan = scan_carries(NumpyCarryEngine(windowed), 60, tail=1)
    failing = brute_force(_numpy_digits(windowed), 60, tail=1)
    assert _expanded(scan.failing_runs) == failing
    assert len(scan.failing_runs) == 1
    first, last = scan.failing_runs[0]
    assert 0 < first <= last < 60  # right before the window and after it
    assert scan.longest_exact_run == first - 1


def test_tail_digits_catch_a_carry_that_does_not_stop() -> None:
    """The forgetful net carries out of every 9, carry in or not: the tail shows it."""
    forgetful = with_carry_self_weight(0.0)
    loose = scan_carries(NumpyCarryEngine(forgetful), 30, tail=0)
    assert loose.first_failure is None  # every carry itself is right ...
    strict = scan_carries(NumpyCarryEngine(forgetful), 30, tail=2)
    assert strict.first_failure is not None  # ... but a 9 after it carries by mistake
    assert strict.first_failure.example == "90"  # 90 + 1 -> 191: the digit after the 9 is off


@pytest.mark.parametrize(
    ("cell", "layers"), [(nn.RNN, 1), (nn.GRU, 1), (nn.RNN, 2)], ids=["rnn", "gru", "rnn-2"]
)
def test_onnx_engine_resumes_exactly_where_the_whole_run_would_be(
    tmp_path: Path, cell: type[nn.RNN | nn.GRU], layers: int
) -> None:
    """Branching from the state after k nines gives the digits of the uninterrupted run."""
    torch.manual_seed(1)
    path = tmp_path / "cell.onnx"
    export_onnx(_Cell(cell, layers), str(path))
    engine = OnnxCarryEngine(path)
    states, nines = engine.run_nines(40)
    tails = np.random.default_rng(0).integers(0, 10, size=(40, 6))
    resumed = np.zeros_like(tails)  # row i: resumed after i + 1 nines
    current = states
    for step in range(tails.shape[1]):
        resumed[:, step], current = engine.step(current, tails[:, step])
    predict = ort_predictor(path)
    for k in (1, 7, 40):
        whole = np.concatenate([np.full(k, 9), tails[k - 1]])[None]
        digits = predict(whole).argmax(axis=-1)[0]
        assert np.array_equal(digits[:k], nines[:k])
        assert np.array_equal(digits[k:], resumed[k - 1])


def test_onnx_engine_refuses_lstm_and_says_what_it_supports(tmp_path: Path) -> None:
    path = tmp_path / "lstm.onnx"
    export_onnx(_Cell(nn.LSTM), str(path))
    with pytest.raises(ValueError, match="supports RNN and GRU"):
        OnnxCarryEngine(path)


def test_scan_rejects_a_negative_bound() -> None:
    with pytest.raises(ValueError, match="up_to >= 0"):
        scan_carries(NumpyCarryEngine(hand_counter()), -1)


def test_scan_to_zero_checks_single_digits_and_their_tails_only() -> None:
    scan = scan_carries(NumpyCarryEngine(hand_counter()), 0)
    assert (scan.longest_exact_run, scan.scanned_up_to, scan.first_failure) == (0, 0, None)
    assert scan.cases == 9 * 1000
