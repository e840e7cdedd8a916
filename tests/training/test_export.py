"""The exported graph: dynamic batch and time, the native recurrent op, and parity with torch."""

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from app.card import CarryFailure, ModelCard
from tests.training.hand_counter import export_weights, hand_counter
from training import export as export_module
from training.carry_scan import OnnxCarryEngine, scan_carries
from training.certify import certify_onnx
from training.data import Split
from training.evaluate import ort_predictor
from training.export import (
    InconsistentMeasurementError,
    counter_from_onnx,
    export,
    export_onnx,
    measure,
)
from training.model import Counter, ModelConfig, Probabilities
from training.train import post_recipe, train

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
    card = export(trained, tmp_path / "tiny", scan_up_to=1000)
    written = ModelCard.model_validate_json((tmp_path / "tiny.json").read_text())
    assert written == card
    assert card.sha256 == hashlib.sha256((tmp_path / "tiny.onnx").read_bytes()).hexdigest()
    assert card.plots == ["tiny.png"]
    assert (tmp_path / "tiny.png").stat().st_size > 10_000
    assert card.recipe.seed == 1
    assert card.recipe.epochs_run == trained.epochs_run
    metrics = card.metrics
    assert metrics.carry_scanned_up_to == 1000
    # The post recipe learns no carry past ~10 nines: not certified, and the card says where.
    assert not metrics.carry_certified
    assert not metrics.certificate.certified
    failure = metrics.carry_first_failure
    assert failure is not None
    assert failure.nines <= 1000
    assert metrics.reliable_carry_length == failure.nines - 1
    assert f"{failure.nines} nines" in card.notes


def test_export_refuses_a_certificate_the_carry_scan_contradicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proof of every carry beside a wrong carry is a bug in one of them: no card, an error."""
    path = tmp_path / "hand.onnx"
    export_weights(hand_counter(), str(path))
    model = onnx.load(str(path))
    assert certify_onnx(model).certified
    scan = scan_carries(OnnxCarryEngine(model), 30)
    assert scan.first_failure is None
    wrong = replace(
        scan, reliable_length=6, first_failure=CarryFailure(nines=7, next_digit=3), failures=1
    )
    monkeypatch.setattr(export_module, "scan_carries", lambda engine, up_to: wrong)
    split = Split(train=["1"], val=["2"])
    with pytest.raises(InconsistentMeasurementError, match="7 nines then 3"):
        measure(model, ort_predictor(model), split, 0, OnnxCarryEngine(model), 30)
