"""The exported graph: dynamic batch and time, the native recurrent op, and parity with torch."""

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from core.card import CarryFailure, ModelCard
from core.certificate import certify_onnx
from core.weights import RnnWeights
from tests.training.hand_counter import export_weights, hand_counter, leaky_counter
from training import export as export_module
from training import kernels
from training.carry_scan import OnnxCarryEngine, scan_carries
from training.data import Split
from training.evaluate import ort_predictor
from training.export import InconsistentMeasurementError, export, measure
from training.model import Counter, ModelConfig, Probabilities
from training.onnx_graph import counter_from_onnx, counter_from_weights, export_onnx
from training.train import Trained, post_recipe, train

MODELS = Path(__file__).resolve().parents[2] / "models"
NATIVE_OP = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_other_lengths_and_batch_sizes_work(cell: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Counter(ModelConfig(cell=cell)).eval()  # type: ignore[arg-type]
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    graph = onnx.load(str(path)).graph
    assert NATIVE_OP[cell] in {node.op_type for node in graph.node}
    assert [i.name for i in graph.input] == ["digits"]
    assert [o.name for o in graph.output] == ["probabilities"]
    session = _session(path)
    rng = np.random.default_rng(0)
    for batch, time in [(1, 1), (1, 3), (5, 2), (4, 77), (2, 1000)]:
        digits = rng.integers(0, 10, size=(batch, time), dtype=np.int64)
        (got,) = session.run(["probabilities"], {"digits": digits})
        assert got.shape == (batch, time, 10)
        assert got.dtype == np.float32
        want = Probabilities(model)(torch.from_numpy(digits)).detach().numpy()
        assert np.abs(got - want).max() <= 1e-5


@pytest.mark.parametrize("name", ["counter", "counter-post"])
@pytest.mark.parametrize("length", [1, 10, 100, 10_000])
def test_shipped_models_match_torch(name: str, length: int) -> None:
    path = MODELS / f"{name}.onnx"
    model = counter_from_onnx(path)
    rng = np.random.default_rng(length)
    digits = rng.integers(0, 10, size=(8, length), dtype=np.int64)
    digits[0, : length - 1] = 9  # a long carry: the hardest case for parity
    (got,) = _session(path).run(["probabilities"], {"digits": digits})
    with torch.no_grad():
        want = Probabilities(model)(torch.from_numpy(digits)).numpy()
    assert np.abs(got - want).max() <= 1e-5
    assert np.array_equal(got.argmax(-1), want.argmax(-1))


def test_export_writes_a_card_that_describes_its_own_file(tmp_path: Path) -> None:
    trained = train(post_recipe(seed=1), progress=False)
    card = export(trained, tmp_path / "tiny", scan_up_to=50, proof_limit=100)
    written = ModelCard.model_validate_json((tmp_path / "tiny.json").read_text())
    assert written == card
    assert card.sha256 == hashlib.sha256((tmp_path / "tiny.onnx").read_bytes()).hexdigest()
    assert card.plots == ["tiny.png"]
    assert (tmp_path / "tiny.png").stat().st_size > 10_000
    assert card.recipe.seed == 1
    assert card.recipe.epochs_run == trained.epochs_run
    assert card.recipe.kernels == trained.kernels
    metrics = card.metrics
    assert metrics.carry_scan.scanned_up_to == 50
    assert metrics.certificate.search_limit == 100
    # Whatever this CPU's training gave, the card is consistent with itself: the proof and
    # the scan agree, and the note says what each found.
    proved = metrics.reliable_carry_length
    assert proved == metrics.certificate.proved_carry_length
    if proved != "unbounded":
        assert all(first > proved for first, _ in metrics.carry_scan.failing_runs)
    failure = metrics.carry_scan.first_failure
    if failure is not None:
        assert failure.example in card.notes


def _trained(weights: RnnWeights, tmp_path: Path) -> Trained:
    """A hand-built net dressed as a training run, to export through the real path."""
    recipe = post_recipe(hidden_size=weights.hidden_size, seed=0)
    return Trained(
        model=counter_from_weights(weights),
        recipe=recipe,
        split=Split(train=["1", "19", "299"], val=["5", "10"]),
        epochs_run=1,
        wall_seconds=0.0,
        kernels=kernels.describe("portable", 1),
        history=[1.0],
    )


def test_a_card_states_a_finite_proof_and_the_scans_failures(tmp_path: Path) -> None:
    card = export(_trained(leaky_counter(), tmp_path), tmp_path / "leaky", scan_up_to=40)
    metrics = card.metrics
    assert metrics.reliable_carry_length == 15  # the proof reaches the scan's last exact run
    assert metrics.carry_scan.longest_exact_run == 15
    assert metrics.carry_scan.failing_runs == [(16, 40)]
    assert not metrics.certificate.certified
    failure = metrics.carry_scan.first_failure
    assert failure is not None
    assert failure.nines == 16
    assert "every input ending in at most 15 nines" in card.notes
    assert f"{failure.example} + 1 gave {failure.got}" in card.notes


def test_export_refuses_a_certificate_the_carry_scan_contradicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proof of every carry beside a wrong carry is a bug in one of them: no card, an error."""
    path = tmp_path / "hand.onnx"
    export_weights(hand_counter(), str(path))
    model = onnx.load(str(path))
    assert certify_onnx(model).certified
    scan = scan_carries(OnnxCarryEngine(model), 30, tail=1)
    assert scan.first_failure is None
    failure = CarryFailure(nines=7, next_digit=3, example="39999999", expected="40000000", got="0")
    wrong = scan.model_copy(
        update={"longest_exact_run": 6, "failing_runs": [(7, 7)], "first_failure": failure}
    )
    monkeypatch.setattr(export_module, "scan_carries", lambda engine, up_to: wrong)
    split = Split(train=["1"], val=["2"])
    with pytest.raises(InconsistentMeasurementError, match=r"7 nines \(39999999\)"):
        measure(model, ort_predictor(model), split, 0, OnnxCarryEngine(model), 30)
    assert not (tmp_path / "hand.json").exists()
