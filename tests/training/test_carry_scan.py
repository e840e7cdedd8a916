"""The exact carry scan: agrees with running every whole number, in numpy and in onnxruntime."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from torch import nn

from app.card import CarryFailure
from app.codec import encode_batch, target_digits
from tests.training.hand_counter import (
    NumpyCarryEngine,
    export_onnx,
    export_weights,
    hand_counter,
    leaky_counter,
    run,
    with_carry_self_weight,
)
from training.carry_scan import OnnxCarryEngine, scan_carries
from training.evaluate import ort_predictor
from training.weights import RnnWeights

OutputDigits = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.int64]]


def brute_force(output_digits: OutputDigits, up_to: int) -> tuple[int, CarryFailure | None]:
    """DESIGN.md's definition run literally: every whole number "d" + k nines, and k nines."""
    for k in range(up_to + 1):
        cases: list[tuple[str, int | None]] = [(str(d) + "9" * k, d) for d in range(9)]
        if k:
            cases.insert(0, ("9" * k, None))
        numbers = [number for number, _ in cases]
        got = output_digits(encode_batch(numbers))
        for row, (number, d) in enumerate(cases):
            if not np.array_equal(got[row, : k + 1], target_digits(number)[: k + 1]):
                # k nines alone is wrong exactly when the nines or the extra zero step are:
                # report it as d = 0 unless the nines themselves were wrong (then None).
                nines_wrong = not np.array_equal(got[row, :k], np.zeros(k))
                digit = None if nines_wrong else (d if d is not None else 0)
                return k - 1, CarryFailure(nines=k, next_digit=digit)
    return up_to, None


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
    # tail=0: exactly the definition (first k + 1 digits), nothing stricter
    scan = scan_carries(NumpyCarryEngine(weights), 60, tail=0)
    assert (scan.reliable_length, scan.first_failure) == brute_force(_numpy_digits(weights), 60)
    assert scan.scanned_up_to == 60


def test_onnx_scan_agrees_with_brute_force_on_a_net_that_fails_at_some_k(
    leaky_onnx: Path,
) -> None:
    scan = scan_carries(OnnxCarryEngine(leaky_onnx), 60)
    expected = brute_force(_onnx_digits(leaky_onnx), 60)
    assert 5 < expected[0] < 60  # the fixture fails somewhere in the middle
    assert (scan.reliable_length, scan.first_failure) == expected
    assert scan.engine.startswith("onnxruntime")
    assert scan.failures == 60 - scan.reliable_length


@pytest.mark.slow
def test_onnx_scan_of_the_exact_counter_reaches_100000(tmp_path: Path) -> None:
    path = tmp_path / "exact.onnx"
    export_weights(hand_counter(), str(path))
    scan = scan_carries(OnnxCarryEngine(path), 100_000)
    assert scan.reliable_length == scan.scanned_up_to == 100_000
    assert scan.first_failure is None
    assert scan.failures == 0


def test_tail_digits_catch_a_carry_that_does_not_stop() -> None:
    """The forgetful net carries out of every 9, carry in or not: the random tail shows it."""
    forgetful = with_carry_self_weight(0.0)
    loose = scan_carries(NumpyCarryEngine(forgetful), 30, tail=0)
    assert loose.first_failure is None  # every carry itself is right ...
    strict = scan_carries(NumpyCarryEngine(forgetful), 30, tail=3, seed=1)
    assert strict.first_failure is not None  # ... but a 9 in the tail carries by mistake


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
    resumed = engine.branch(states, tails)  # row i: resumed after i + 1 nines
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


def test_scan_to_zero_checks_single_digits_only() -> None:
    scan = scan_carries(NumpyCarryEngine(hand_counter()), 0)
    assert (scan.reliable_length, scan.scanned_up_to, scan.first_failure) == (0, 0, None)
