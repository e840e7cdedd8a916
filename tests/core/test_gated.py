"""The certificate on GRUs and LSTMs: their boxes hold onnxruntime's float32 states, weights
come back from exported graphs gate for gate, a certified counter answers right, a damaged one
is not certified, and graphs the cells do not compute are declined."""

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from core.cells import GruCell, LstmCell
from core.certificate import cell_from_onnx, certify_onnx, prove_weights
from core.certify import prove_carry
from core.codec import add_one, encode_batch
from core.session import open_session
from core.weights import (
    GruWeights,
    LstmWeights,
    UnsupportedModelError,
    recurrent_weights_from_onnx,
    weights_from_onnx,
)
from tests.training.hand_counter import (
    CARRY,
    export_weights,
    hand_counter,
    hand_gru,
    hand_lstm,
    leaky_counter,
    with_carry_self_weight,
)
from training.evaluate import exact_match, ort_predictor, random_numbers
from training.model import Counter, ModelConfig
from training.onnx_graph import counter_from_onnx, export_onnx
from training.proof import model_cell, model_weights

GATED = ["gru", "lstm"]
FIELDS = ["w_ih", "w_hh", "b_ih", "b_hh", "w_out", "b_out"]
# Above the kernels' measured errors (6.1e-7 at most, tests/core/test_activation.py), below
# the default: boxes with as little room as a sound image can have.
TIGHT_ERROR = 1e-6


def _random_counter(cell: str, seed: int, gain: float, size: int = 8) -> Counter:
    """A random GRU or LSTM counter with its cell's weights scaled by gain (saturating gates)."""
    torch.manual_seed(seed)
    counter = Counter(ModelConfig(cell=cell, hidden_size=size)).eval()  # type: ignore[arg-type]
    with torch.no_grad():
        for parameter in counter.cell.parameters():
            parameter.mul_(gain)
    return counter


def _one_step(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """The exported graph with its recurrent op's initial state as inputs (step_h0, and the
    LSTM's step_c0) and its Y (and the LSTM's Y_c, the cell state after the last step) as
    outputs. Same op, same weights; and the hidden size."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    graph = exposed.graph
    node = next(n for n in graph.node if n.op_type in ("GRU", "LSTM"))
    size = next(int(a.i) for a in node.attribute if a.name == "hidden_size")
    states = ["step_h0", "step_c0"] if node.op_type == "LSTM" else ["step_h0"]
    while len(node.input) < 5 + len(states):
        node.input.append("")
    for offset, name in enumerate(states):
        node.input[5 + offset] = name
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, "n", size]))
    graph.output.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None))
    if node.op_type == "LSTM":
        while len(node.output) < 3:
            node.output.append("")
        node.output[2] = node.output[2] or "step_c"
        graph.output.append(helper.make_tensor_value_info(node.output[2], TensorProto.FLOAT, None))
    return exposed, size


def _deployed_step(
    session: Any, size: int, lstm: bool, states: np.ndarray, digits: np.ndarray
) -> np.ndarray:
    """onnxruntime's float32 states after reading digits (N,) from states (N, S): (N, S)."""
    feeds = {
        "digits": np.ascontiguousarray(digits, dtype=np.int64)[:, None],
        "step_h0": np.ascontiguousarray(states[None, :, :size], dtype=np.float32),
    }
    if lstm:
        feeds["step_c0"] = np.ascontiguousarray(states[None, :, size:], dtype=np.float32)
    outputs = session.run(None, feeds)
    hidden: np.ndarray = np.asarray(outputs[1], dtype=np.float64)[0, 0]  # Y (1, 1, N, H)
    if lstm:
        return np.concatenate([hidden, np.asarray(outputs[2], dtype=np.float64)[0]], axis=-1)
    return hidden


@pytest.mark.parametrize("cell", GATED)
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), gain=st.sampled_from([1.0, 4.0, 12.0]), wide=st.booleans())
def test_a_gated_image_holds_onnxruntimes_float32_steps(
    tmp_path_factory: pytest.TempPathFactory, cell: str, seed: int, gain: float, wide: bool
) -> None:
    """Points in a box, one step of the real exported graph each: inside the image, for every
    digit. Point boxes (wide=False) leave only rounding and the activation allowance."""
    path = tmp_path_factory.mktemp("gated") / "model.onnx"
    export_onnx(_random_counter(cell, seed, gain), path)
    model = onnx.load(str(path))
    exposed, size = _one_step(model)
    session = open_session(exposed.SerializeToString())
    gated = cell_from_onnx(model, TIGHT_ERROR)
    rng = np.random.default_rng(seed)
    width = gated.state_size
    # h in [-1, 1]; an LSTM's c wider (it sums gates over steps)
    centre = rng.uniform(-1, 1, width) * np.where(np.arange(width) < size, 1.0, 3.0)
    radius = rng.uniform(0, 0.3, width) * rng.integers(0, 2, width) if wide else np.zeros(width)
    lo, hi = centre - radius, centre + radius
    points = rng.uniform(lo, hi, size=(64, width)).astype(np.float32)
    if not wide:
        lo = hi = points[0].astype(np.float64)
        points[:] = points[0]
    image_lo, image_hi = gated.image(lo[None], hi[None])  # (1, 10, S)
    for digit in range(10):
        digits = np.full(len(points), digit)
        after = _deployed_step(session, size, cell == "lstm", points, digits)
        assert np.all(image_lo[0, digit] <= after), digit
        assert np.all(after <= image_hi[0, digit]), digit


@pytest.mark.parametrize("cell", GATED)
def test_gated_boxes_hold_the_deployed_states_along_whole_inputs(tmp_path: Path, cell: str) -> None:
    """The proof's invariant, checked step by step against onnxruntime on whole numbers."""
    weights = hand_gru(leaky_counter()) if cell == "gru" else hand_lstm(leaky_counter())
    path = tmp_path / "leaky.onnx"
    export_weights(weights, str(path))
    proof = prove_carry(cell_from_onnx(path), limit=200)
    assert proof.reliable is not None
    assert proof.reliable >= 5  # right on short runs, like the leaky RNN
    invariant = proof.invariant
    assert invariant is not None
    rng = np.random.default_rng(2)
    numbers = [
        "9" * proof.reliable,
        "7" + "9" * proof.reliable,
        *random_numbers(40, 100, rng),
    ]
    exposed, size = _one_step(onnx.load(str(path)))
    session = open_session(exposed.SerializeToString())
    digits = encode_batch(numbers)  # (N, T)
    states = np.zeros((len(numbers), 2 * size if cell == "lstm" else size), dtype=np.float32)
    boxes = [invariant.boxes_along(row.tolist()) for row in digits]
    for step in range(digits.shape[1]):
        states = _deployed_step(session, size, cell == "lstm", states, digits[:, step])
        for row in range(len(numbers)):
            lo, hi = boxes[row][step]
            assert np.all((lo <= states[row]) & (states[row] <= hi)), (numbers[row][:20], step)


@pytest.mark.parametrize("cell", GATED)
def test_gated_weights_round_trip_through_an_exported_graph(tmp_path: Path, cell: str) -> None:
    counter = _random_counter(cell, seed=3, gain=1.0)
    path = tmp_path / "model.onnx"
    export_onnx(counter, path)
    read = recurrent_weights_from_onnx(path)
    assert isinstance(read, GruWeights if cell == "gru" else LstmWeights)
    expected = model_weights(counter)  # PyTorch's parameters, gates put in ONNX's order
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(read, field), getattr(expected, field))
    back = counter_from_onnx(path)  # and ONNX's order put back in PyTorch's
    for name, value in counter.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name
    cell_type = GruCell if cell == "gru" else LstmCell
    assert isinstance(model_cell(counter), cell_type)
    assert isinstance(cell_from_onnx(path.read_bytes()), cell_type)
    with pytest.raises(UnsupportedModelError, match=cell.upper()):
        weights_from_onnx(path)  # the tanh-RNN reader says what it found


def _exact_on_many_inputs(path: Path) -> float:
    rng = np.random.default_rng(4)
    numbers = [
        *("9" * k for k in range(1, 400, 7)),
        *(str(d) + "9" * k for d in range(1, 9) for k in (1, 2, 3, 17, 150)),
        *(prefix + "9" * k for k in range(0, 60, 3) for prefix in random_numbers(12, 3, rng)),
        *random_numbers(60, 300, rng),
        "9" * 3000,
    ]
    return exact_match(ort_predictor(path), numbers)


@pytest.mark.parametrize("cell", GATED)
def test_a_certified_hand_built_gated_counter_answers_right(tmp_path: Path, cell: str) -> None:
    weights = hand_gru() if cell == "gru" else hand_lstm()
    path = tmp_path / "hand.onnx"
    export_weights(weights, str(path))
    certificate = certify_onnx(path)
    assert certificate.certified, certificate.reason
    assert certificate.margin is not None
    assert certificate.margin > 0
    assert _exact_on_many_inputs(path) == 1.0
    assert add_one("9" * 50) == "1" + "0" * 50


@pytest.mark.parametrize("cell", GATED)
@pytest.mark.parametrize("self_weight", ["flipped", "forgetful"])
def test_a_damaged_gated_counter_is_not_certified(cell: str, self_weight: str) -> None:
    gain = hand_counter().w_hh[CARRY, CARRY]
    damaged_rnn = with_carry_self_weight(-gain if self_weight == "flipped" else 0.0)
    damaged = hand_gru(damaged_rnn) if cell == "gru" else hand_lstm(damaged_rnn)
    proof, _ = prove_weights(damaged)  # under every allowance
    assert not proof.unbounded
    assert proof.reliable in (-1, 0, 1)
    assert "not proved" in proof.reason


@pytest.mark.parametrize("cell", GATED)
def test_a_damaged_gated_counter_really_answers_wrong(tmp_path: Path, cell: str) -> None:
    damaged_rnn = with_carry_self_weight(0.0)
    path = tmp_path / "damaged.onnx"
    export_weights(hand_gru(damaged_rnn) if cell == "gru" else hand_lstm(damaged_rnn), str(path))
    assert _exact_on_many_inputs(path) < 1.0


def _set_attribute(model: onnx.ModelProto, op: str, name: str, value: object) -> None:
    node = next(n for n in model.graph.node if n.op_type == op)
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(name, value)])


def _exported(tmp_path: Path, cell: str) -> onnx.ModelProto:
    path = tmp_path / f"{cell}.onnx"
    export_weights(hand_gru() if cell == "gru" else hand_lstm(), str(path))
    return onnx.load(str(path))


@pytest.mark.parametrize(
    ("cell", "name", "value", "named"),
    [
        ("gru", "linear_before_reset", 0, "linear_before_reset"),
        ("gru", "activations", ["Sigmoid", "Relu"], "activations"),
        ("gru", "direction", "reverse", "direction"),
        ("gru", "clip", 3.0, "clip"),
        ("lstm", "input_forget", 1, "input_forget"),
        ("lstm", "activations", ["Sigmoid", "Tanh", "Relu"], "activations"),
        ("lstm", "layout", 1, "layout"),
    ],
)
def test_a_gated_op_computing_otherwise_is_declined(
    tmp_path: Path, cell: str, name: str, value: object, named: str
) -> None:
    model = _exported(tmp_path, cell)
    assert certify_onnx(model).certified  # untouched, it is
    _set_attribute(model, cell.upper(), name, value)
    certificate = certify_onnx(model)
    assert not certificate.certified
    assert certificate.proved_carry_length == -1
    assert named in certificate.reason


def test_an_lstm_with_peepholes_or_a_nonzero_start_is_declined(tmp_path: Path) -> None:
    model = _exported(tmp_path, "lstm")
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    size = hand_counter().hidden_size
    peephole = helper.make_tensor("P", TensorProto.FLOAT, [1, 3 * size], np.zeros(3 * size))
    model.graph.initializer.append(peephole)
    node.input.append("P")
    assert "peephole" in certify_onnx(model).reason

    model = _exported(tmp_path, "lstm")
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    zeros = next(n for n in model.graph.node if n.output[0] == node.input[6])  # h0's too
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    ones = helper.make_node("ConstantOfShape", [zeros.input[0]], ["ones"], value=one)
    model.graph.node.insert(list(model.graph.node).index(node), ones)
    node.input[6] = "ones"
    onnx.checker.check_model(model)
    assert "c0 = 0" in certify_onnx(model).reason


def test_gated_weights_must_have_consistent_shapes() -> None:
    weights = hand_gru()
    with pytest.raises(ValueError, match=r"GruWeights.b_hh has shape \(21,\), expected \(63,\)"):
        GruWeights(
            w_ih=weights.w_ih,
            w_hh=weights.w_hh,
            b_ih=weights.b_ih,
            b_hh=weights.b_hh[:21],
            w_out=weights.w_out,
            b_out=weights.b_out,
        )
