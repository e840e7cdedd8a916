"""The certificate: it proves a counter known to be exact, finds the K a failing one is right
up to, refuses broken ones, and its boxes really hold the deployed float32 states."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from core.cells import RnnCell
from core.certificate import certify, certify_onnx
from core.certify import DEFAULT_TANH_ERROR, prove_carry
from core.codec import add_one, carry_run, encode_batch, target_digits
from core.session import open_session
from core.weights import RnnWeights, weights_from_onnx
from tests.training.hand_counter import (
    CARRY,
    NumpyCarryEngine,
    add_one_by_network,
    export_weights,
    hand_counter,
    leaky_counter,
    run,
    with_carry_self_weight,
)
from tests.training.hand_counter import (
    export_onnx as export_onnx_module,
)
from training.carry_scan import expose_recurrent_state, scan_carries
from training.evaluate import random_numbers
from training.model import Counter, ModelConfig
from training.onnx_graph import export_onnx

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


def _cell(weights: RnnWeights, tanh_error: float = DEFAULT_TANH_ERROR) -> RnnCell:
    return RnnCell(weights, tanh_error)


def test_hand_built_counter_really_adds_one() -> None:
    assert add_one_by_network(hand_counter(), NUMBERS) == [add_one(n) for n in NUMBERS]


def test_hand_built_counter_is_proved_for_every_run_of_nines() -> None:
    certificate = certify(_cell(hand_counter()))
    assert certificate.certified, certificate.reason
    assert certificate.proved_carry_length == "unbounded"
    assert certificate.margin is not None
    assert certificate.margin > 0
    assert certificate.iterations >= 1


def test_flipped_carry_self_connection_is_not_proved_past_its_first_nines() -> None:
    damaged = with_carry_self_weight(-hand_counter().w_hh[CARRY, CARRY])
    assert add_one_by_network(damaged, ["99"]) != ["100"]  # it really breaks the carry
    certificate = certify(_cell(damaged))
    assert not certificate.certified
    assert certificate.proved_carry_length in (-1, 0, 1)
    assert "not proved" in certificate.reason


def test_forgetful_carry_unit_proves_nothing_and_names_the_box() -> None:
    damaged = with_carry_self_weight(0.0)  # carry out on every 9, even with no carry in
    assert add_one_by_network(damaged, ["90"]) != ["91"]  # 90 + 1 -> 191
    certificate = certify(_cell(damaged))
    assert certificate.proved_carry_length == -1
    assert "a run of 0 nines is not proved" in certificate.reason
    assert "right digit" in certificate.reason


def test_a_net_that_fails_on_long_runs_is_proved_only_below_its_first_failure() -> None:
    leaky = leaky_counter()
    scan = scan_carries(NumpyCarryEngine(leaky), 100, tail=2)
    assert scan.first_failure is not None  # wrong on a long run of nines ...
    proof = prove_carry(_cell(leaky), limit=200)
    assert proof.reliable is not None
    assert 0 <= proof.reliable < scan.first_failure.nines  # ... proved right on short ones
    assert proof.reliable >= 5
    assert f"a run of {proof.reliable + 1} nines is not proved" in proof.reason


def test_every_input_within_a_finite_proof_is_right() -> None:
    """What a finite K promises, checked: trailing runs up to K, many lengths and digits."""
    leaky = leaky_counter()
    proof = prove_carry(_cell(leaky), limit=200)
    assert proof.reliable is not None
    rng = np.random.default_rng(3)
    numbers = [
        prefix + str(d) + "9" * k
        for k in range(proof.reliable + 1)
        for d in range(9)
        for prefix in ("", *random_numbers(int(rng.integers(1, 40)), 3, rng))
    ]
    assert add_one_by_network(leaky, numbers) == [add_one(n) for n in numbers]


def test_a_search_limit_bounds_a_finite_k() -> None:
    leaky = leaky_counter()
    proof = prove_carry(_cell(leaky), limit=3)
    assert proof.reliable == 3
    assert "up to 3 nines is proved; longer runs were not tried" in proof.reason


def test_the_proof_is_deterministic() -> None:
    first, second = (certify(_cell(leaky_counter()), limit=200) for _ in range(2))
    assert first == second


def test_boxes_still_growing_at_the_iteration_cap_prove_nothing() -> None:
    soft = hand_counter(gain=3.0)  # unsaturated: its copying boxes take a few pushes to settle
    proof = prove_carry(_cell(soft), limit=50, max_iterations=2)
    assert proof.reliable == -1
    assert "the steady copying boxes still grew after 2 iterations" in proof.reason


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
    np.testing.assert_array_equal(weights_from_onnx(path.read_bytes()).w_hh, weights.w_hh)


def test_certify_onnx_proves_the_exported_hand_counter(tmp_path: Path) -> None:
    path = tmp_path / "hand.onnx"
    export_weights(hand_counter(), str(path))
    certificate = certify_onnx(path)
    assert certificate.certified, certificate.reason


@pytest.mark.parametrize(
    ("config", "named"),
    [(ModelConfig(nonlinearity="relu", hidden_size=8), "Relu"), (None, "['RNN', 'RNN']")],
    ids=["relu-rnn", "two-layer-rnn"],
)
def test_certify_onnx_proves_nothing_for_cells_the_boxes_do_not_cover(
    tmp_path: Path, config: ModelConfig | None, named: str
) -> None:
    path = tmp_path / "uncovered.onnx"
    if config is None:
        export_onnx_module(_TwoLayers(), str(path))
    else:
        export_onnx(Counter(config), path)
    certificate = certify_onnx(path)
    assert not certificate.certified
    assert certificate.proved_carry_length == -1
    assert named in certificate.reason


class _TwoLayers(torch.nn.Module):
    """Digits -> probabilities through two stacked tanh RNN layers: not one cell."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = torch.nn.RNN(10, 8, num_layers=2, batch_first=True)
        self.readout = torch.nn.Linear(8, 10)

    def forward(self, digits: torch.Tensor) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(digits, 10).to(torch.float32)
        return torch.softmax(self.readout(self.cell(onehot)[0]), dim=-1)


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


def _deployed_states(weights: RnnWeights, path: Path, numbers: list[str]) -> np.ndarray:
    """onnxruntime's float32 hidden states for each number, (T, N, H)."""
    export_weights(weights, str(path))
    exposed, _ = expose_recurrent_state(onnx.load(str(path)))
    session = open_session(exposed.SerializeToString())
    digits = encode_batch(numbers)
    start = np.zeros((1, len(numbers), weights.hidden_size), dtype=np.float32)
    _, hidden = session.run(None, {"digits": digits, "carry_initial_h_0": start})
    return np.asarray(hidden, dtype=np.float64)[:, 0]


@pytest.mark.parametrize(
    ("weights", "readout"),
    [(hand_counter(gain=4.0), True), (leaky_counter(), True), (_random_contracting_rnn(), False)],
    ids=["soft-counter", "leaky-counter", "random"],
)
def test_deployed_hidden_states_stay_inside_their_boxes(
    tmp_path: Path, weights: RnnWeights, readout: bool
) -> None:
    """The invariant is about onnxruntime's float32 states: check them against the boxes."""
    # Random weights add no one: build their boxes without the readout check.
    proof = prove_carry(_cell(weights), limit=300, readout=readout)
    invariant = proof.invariant
    assert invariant is not None
    covered = len(invariant.carrying) if proof.reliable is not None else 300
    rng = np.random.default_rng(1)
    numbers = [
        "9" * min(covered, 200),
        "8" + "9" * min(covered, 50),
        "0" * 5 + "9" * min(covered, 7),
        *random_numbers(60, 300, rng),
    ]
    states = _deployed_states(weights, tmp_path / "model.onnx", numbers)  # (T, N, H)
    digits = encode_batch(numbers)  # (N, T): every row's own steps, then padding zeros
    for row in range(len(numbers)):
        boxes = invariant.boxes_along(digits[row].tolist())
        for step, (lo, hi) in enumerate(boxes):
            state = states[step, row]
            assert np.all((lo <= state) & (state <= hi)), (numbers[row][:20], step)


def _shifted(weights: RnnWeights, digit: int, by: float) -> RnnWeights:
    b_out = weights.b_out.copy()
    b_out[digit] += by
    return RnnWeights(
        w_ih=weights.w_ih,
        w_hh=weights.w_hh,
        b_ih=weights.b_ih,
        b_hh=weights.b_hh,
        w_out=weights.w_out,
        b_out=b_out,
    )


def _closest_call(weights: RnnWeights) -> tuple[str, int, float]:
    """Over many real inputs, the (number, rival) where a rival comes closest to the right
    digit's logit, and that gap: an input a bias shift just past it makes wrong."""
    rng = np.random.default_rng(5)
    numbers = [
        *random_numbers(12, 2000, rng),
        *(f"{d}" + "9" * k for k in range(40) for d in range(9)),
    ]
    digits = encode_batch(numbers)
    _, states = run(weights, digits)  # (N, T, H)
    logits = states @ weights.w_out.T + weights.b_out  # (N, T, 10)
    target = np.stack([target_digits(n.zfill(digits.shape[1] - 1)) for n in numbers])
    right = np.take_along_axis(logits, target[..., None], axis=-1)[..., 0]  # (N, T)
    gaps = right[..., None] - logits  # (N, T, 10)
    np.put_along_axis(gaps, target[..., None], np.inf, axis=-1)
    row, step, rival = np.unravel_index(int(gaps.argmin()), gaps.shape)
    return numbers[row], int(rival), float(gaps[row, step, rival])


@pytest.mark.parametrize("name", ["counter", "hand"])
def test_the_margin_is_a_real_bound_and_a_broken_model_is_not_certified(name: str) -> None:
    """Moving one rival's bias by less than the margin keeps the proof; moving it past the
    smallest gap a real input has makes that input wrong, and then nothing may certify it."""
    weights = hand_counter() if name == "hand" else weights_from_onnx(MODELS / "counter.onnx")
    margin = certify(_cell(weights)).margin
    assert margin is not None
    for digit in range(10):  # every gap on every box is at least the margin
        assert certify(_cell(_shifted(weights, digit, margin - 0.01))).certified, digit
    number, rival, gap = _closest_call(weights)
    assert gap >= margin  # the proof's margin bounds every real input's gap from below
    broken = _shifted(weights, rival, gap + 1e-3)
    assert add_one_by_network(broken, [number]) != [add_one(number)]  # really wrong now
    proof = prove_carry(_cell(broken))
    assert proof.reliable is not None  # not certified ...
    assert proof.reliable < carry_run(number)  # ... and not proved for that input either


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
    assert certificate.proved_carry_length == -1
    assert named in certificate.reason
