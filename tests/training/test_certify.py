"""The box certificate: it proves a counter known to be exact, and refuses broken ones."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from app.codec import add_one, encode_batch
from tests.training.hand_counter import (
    CARRY,
    NumpyCarryEngine,
    add_one_by_network,
    export_weights,
    hand_counter,
    leaky_counter,
    with_carry_self_weight,
)
from training.carry_scan import expose_recurrent_state, scan_carries
from training.certify import DEFAULT_INFLATION, certify, certify_onnx, invariant_boxes
from training.evaluate import random_numbers
from training.export import export_onnx
from training.model import Counter, ModelConfig
from training.weights import RnnWeights, weights_from_onnx

MODELS = Path(__file__).resolve().parents[2] / "models"
NUMBERS = [
    "0",
    "9",
    "99",
    "1299",
    "9" * 1000,
    "8" + "9" * 300,
    "90",
    "1000",
    *random_numbers(30, 50, np.random.default_rng(1)),
]


def test_hand_built_counter_really_adds_one() -> None:
    assert add_one_by_network(hand_counter(), NUMBERS) == [add_one(n) for n in NUMBERS]


def test_hand_built_counter_is_certified_with_a_positive_margin() -> None:
    certificate = certify(hand_counter())
    assert certificate.certified, certificate.reason
    assert certificate.margin is not None
    assert certificate.margin > 0
    assert certificate.boxes == 20
    assert certificate.iterations >= 1


def test_flipped_carry_self_connection_fails_naming_the_carry_unit() -> None:
    damaged = with_carry_self_weight(-hand_counter().w_hh[CARRY, CARRY])
    assert add_one_by_network(damaged, ["99"]) != ["100"]  # it really breaks the carry
    certificate = certify(damaged)
    assert not certificate.certified
    assert "box (carry in 1, digit 9)" in certificate.reason
    assert f"unit {CARRY}" in certificate.reason


def test_forgetful_carry_unit_fails_naming_box_and_digits() -> None:
    damaged = with_carry_self_weight(
        0.0
    )  # carry out on every 9, even with no carry in: 90 + 1 -> 191
    assert add_one_by_network(damaged, ["90"]) != ["91"]
    certificate = certify(damaged)
    assert not certificate.certified
    assert "box (carry in 0" in certificate.reason
    assert "right digit" in certificate.reason
    assert certificate.margin is not None
    assert certificate.margin <= 0


def test_a_net_that_fails_on_long_runs_is_not_certified_and_really_fails() -> None:
    leaky = leaky_counter()
    assert add_one_by_network(leaky, ["19"]) == ["20"]  # right on short runs ...
    scan = scan_carries(NumpyCarryEngine(leaky), 100)
    assert scan.first_failure is not None  # ... wrong on a long one
    certificate = certify(leaky)
    assert not certificate.certified
    assert "right digit" in certificate.reason


def test_boxes_still_growing_at_the_iteration_cap_are_not_certified() -> None:
    needed = certify(hand_counter()).iterations
    certificate = certify(hand_counter(), max_iterations=needed - 1)
    assert not certificate.certified
    assert f"still grew after {needed - 1} iterations" in certificate.reason


def test_weights_must_have_consistent_shapes() -> None:
    weights = hand_counter()
    with pytest.raises(ValueError, match=r"w_out has shape \(9, 21\), expected \(10, 21\)"):
        RnnWeights(
            w_ih=weights.w_ih,
            w_hh=weights.w_hh,
            b_ih=weights.b_ih,
            b_hh=weights.b_hh,
            w_out=weights.w_out[:9],
            b_out=weights.b_out,
        )


def test_weights_from_onnx_round_trips_an_exported_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    counter = Counter(ModelConfig(hidden_size=16))
    path = tmp_path / "random.onnx"
    export_onnx(counter, path)
    weights = weights_from_onnx(path)
    expected = {
        "w_ih": "cell.weight_ih_l0",
        "w_hh": "cell.weight_hh_l0",
        "b_ih": "cell.bias_ih_l0",
        "b_hh": "cell.bias_hh_l0",
        "w_out": "readout.weight",
        "b_out": "readout.bias",
    }
    for field, name in expected.items():
        want = counter.get_parameter(name).detach().double().numpy()
        np.testing.assert_array_equal(getattr(weights, field), want)


def test_certify_onnx_proves_the_exported_hand_counter(tmp_path: Path) -> None:
    path = tmp_path / "hand.onnx"
    export_weights(hand_counter(), str(path))
    certificate = certify_onnx(path)
    assert certificate.certified, certificate.reason


def test_certify_onnx_declines_cells_the_boxes_do_not_cover(tmp_path: Path) -> None:
    path = tmp_path / "gru.onnx"
    export_onnx(Counter(ModelConfig(cell="gru", hidden_size=8)), path)
    certificate = certify_onnx(path)
    assert not certificate.certified
    assert "tanh RNNs" in certificate.reason
    assert "GRU" in certificate.reason


def _random_contracting_rnn(size: int = 16) -> RnnWeights:
    """Unsaturated, interval-contracting random weights: boxes with room for rounding to matter."""
    rng = np.random.default_rng(0)
    return RnnWeights(
        w_ih=rng.normal(size=(size, 10)),
        w_hh=rng.uniform(-0.05, 0.05, size=(size, size)),
        b_ih=rng.normal(size=size) * 0.3,
        b_hh=np.zeros(size),
        w_out=rng.normal(size=(10, size)),
        b_out=np.zeros(10),
    )


@pytest.mark.parametrize(
    "weights", [hand_counter(gain=3.0), _random_contracting_rnn()], ids=["soft-counter", "random"]
)
def test_deployed_hidden_states_stay_inside_their_boxes(
    tmp_path: Path, weights: RnnWeights
) -> None:
    """The invariant is about onnxruntime's float32 states: check them against the boxes."""
    boxes = invariant_boxes(weights, check_readout=False)
    assert boxes.failure is None
    path = tmp_path / "model.onnx"
    export_weights(weights, str(path))
    exposed, _ = expose_recurrent_state(onnx.load(str(path)))
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    numbers = ["9" * 200, "8" + "9" * 50, *random_numbers(60, 300, rng)]
    digits = encode_batch(numbers)  # (N, T)
    count, steps = digits.shape
    start = np.zeros((1, count, weights.hidden_size), dtype=np.float32)
    _, hidden = session.run(None, {"digits": digits, "carry_initial_h_0": start})
    states = np.asarray(hidden, dtype=np.float64)[:, 0]  # (T, N, H)
    carry = np.ones(count, dtype=bool)  # adding one: carry in 1 at the first digit
    for t in range(steps):
        for c in (0, 1):
            for d in range(10):
                rows = (carry == c) & (digits[:, t] == d)
                assert boxes.contains(c, d, states[t, rows]).all(), (t, c, d)
        carry &= digits[:, t] == 9


def test_inflation_covers_the_tanh_error_of_the_installed_onnxruntime() -> None:
    """The certificate widens each tanh output by DEFAULT_INFLATION: it must exceed ORT's error."""
    weight = helper.make_tensor("W", TensorProto.FLOAT, [1, 1, 1], [1.0])
    recurrent = helper.make_tensor("R", TensorProto.FLOAT, [1, 1, 1], [0.0])
    graph = helper.make_graph(
        [helper.make_node("RNN", ["X", "W", "R"], ["Y"], hidden_size=1)],
        "tanh",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["time", "batch", 1])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [weight, recurrent],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.linspace(-12, 12, 400_001, dtype=np.float32)
    (y,) = session.run(None, {"X": x.reshape(1, -1, 1)})
    error = np.abs(np.asarray(y, dtype=np.float64).ravel() - np.tanh(x.astype(np.float64)))
    assert error.max() < DEFAULT_INFLATION / 10


def _smallest_gap(weights: RnnWeights, lo: np.ndarray, hi: np.ndarray, right: int) -> float:
    """min over the box and over every wrong digit of logit(right) - logit(wrong), by corners.

    The readout is linear, so per unit the worst point is the box edge that favours the rival.
    """
    gaps = []
    for rival in range(10):
        if rival == right:
            continue
        diff = weights.w_out[right] - weights.w_out[rival]  # (H,)
        worst = np.where(diff > 0, lo, hi)  # (H,): the corner that minimises diff @ h
        gaps.append(diff @ worst + weights.b_out[right] - weights.b_out[rival])
    return float(min(gaps))


def _counter_with_uneven_rounding(heavy: float = 1e4, nudge: float = 0.01) -> RnnWeights:
    """The exact counter where the closest rival is not the one with the least room.

    A constant unit (always +1) enters digits 1 and 2's logits as -heavy, cancelled by +heavy
    in their biases: the same logits, but a float32 rounding bound ~heavy * 1e-6 larger. Digit
    3's bias is nudged up, so 3 is the closest rival wherever it is wrong.
    """
    exact = hand_counter()
    size = exact.hidden_size + 1

    def grow(matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        out = np.zeros(shape)
        out[tuple(slice(0, n) for n in matrix.shape)] = matrix
        return out

    b_ih, w_out = grow(exact.b_ih, (size,)), grow(exact.w_out, (10, size))
    b_out = exact.b_out.copy()
    b_ih[-1] = exact.w_hh[CARRY, CARRY]  # tanh(G) == 1: a box of width ~0
    w_out[[1, 2], -1] = -heavy
    b_out[[1, 2]] += heavy
    b_out[3] += nudge
    return RnnWeights(
        w_ih=grow(exact.w_ih, (size, 10)),
        w_hh=grow(exact.w_hh, (size, size)),
        b_ih=b_ih,
        b_hh=np.zeros(size),
        w_out=w_out,
        b_out=b_out,
    )


def test_margin_is_the_smallest_logit_gap_over_all_boxes() -> None:
    """'Beats every other by at least margin': the smallest gap, not the least-room rival's."""
    weights = _counter_with_uneven_rounding()
    boxes = invariant_boxes(weights, inflation=1e-9)
    assert boxes.failure is None
    reached = zip(*np.nonzero(boxes.lo[..., 0] <= boxes.hi[..., 0]), strict=True)
    want = min(
        _smallest_gap(weights, boxes.lo[c, d], boxes.hi[c, d], (d + c) % 10) for c, d in reached
    )
    assert boxes.margin == pytest.approx(want, rel=0, abs=1e-9)


def _insert_after(model: onnx.ModelProto, op: str, new_op: str, constant: float) -> None:
    """Put `new_op(x, constant)` right after the first `op` node, rewiring its consumers."""
    graph = model.graph
    index, node = next((i, n) for i, n in enumerate(graph.node) if n.op_type == op)
    old, new = node.output[0], node.output[0] + "_tampered"
    for consumer in graph.node:
        consumer.input[:] = [new if name == old else name for name in consumer.input]
    for output in graph.output:
        if output.name == old:  # the Softmax feeds the graph output: keep that name outside
            node.output[0], old, new = new, new, old
    factor = helper.make_tensor(f"{new}_factor", TensorProto.FLOAT, [], [constant])
    graph.initializer.append(factor)
    graph.node.insert(index + 1, helper.make_node(new_op, [old, factor.name], [new]))


@pytest.mark.parametrize(
    ("after", "op", "named"),
    [
        ("Add", "Mul", "Mul"),  # logits scaled before the softmax
        ("Squeeze", "Mul", "Mul"),  # hidden states scaled between the RNN and the readout
        ("Transpose", "Add", "from a Transpose"),  # an allowed op, wired where it does not go
        ("Softmax", "Mul", "Mul"),  # probabilities scaled after the softmax
    ],
)
def test_certify_onnx_declines_a_graph_that_transforms_values_off_the_exported_path(
    tmp_path: Path, after: str, op: str, named: str
) -> None:
    model = onnx.load(str(MODELS / "counter.onnx"))
    assert certify_onnx(model).certified  # untouched, the shipped model is
    _insert_after(model, after, op, 2.0)
    onnx.checker.check_model(model)
    certificate = certify_onnx(model)
    assert not certificate.certified
    assert named in certificate.reason
