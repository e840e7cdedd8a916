"""core.canonical: the service's gate on graphs. The exporter's graphs pass with their own
figures; the shipped model changed around its weights (tests.core.tampered) never does."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from core.canonical import check_canonical
from core.card import ModelCard
from core.codec import encode_batch
from core.onnx_strict import NotCanonicalError
from core.weights import recurrent_weights_from_onnx
from tests.core.tampered import (
    LONG,
    SHIPPED,
    TAMPERINGS,
    Tampering,
    repeated_singular_field,
    softmax_backed_by_a_local_function,
    tampered,
)
from training.model import Counter, ModelConfig, parameter_count
from training.onnx_graph import export_onnx

MODELS = SHIPPED.parent


@pytest.mark.parametrize("name", ["counter", "counter-post"])
def test_the_shipped_models_are_the_exporters_graph_and_say_what_their_cards_say(
    name: str,
) -> None:
    card = ModelCard.model_validate_json((MODELS / f"{name}.json").read_bytes())
    facts = check_canonical((MODELS / f"{name}.onnx").read_bytes())
    architecture = card.architecture
    assert (facts.cell, facts.nonlinearity, facts.hidden_size, facts.layers) == (
        architecture.cell,
        architecture.nonlinearity,
        architecture.hidden_size,
        architecture.layers,
    )
    assert (facts.parameters, facts.opset) == (architecture.parameters, card.frameworks.opset)


@pytest.mark.parametrize(
    ("cell", "hidden", "nonlinearity"),
    [("rnn", 16, "tanh"), ("rnn", 5, "relu"), ("gru", 8, None), ("lstm", 12, None)],
)
def test_every_cell_the_exporter_writes_passes_with_its_own_figures(
    tmp_path: Path, cell: str, hidden: int, nonlinearity: str | None
) -> None:
    config = ModelConfig(cell=cell, hidden_size=hidden, nonlinearity=nonlinearity or "tanh")  # type: ignore[arg-type]
    counter = Counter(config)
    export_onnx(counter, tmp_path / "model.onnx")
    facts = check_canonical((tmp_path / "model.onnx").read_bytes())
    assert (facts.cell, facts.nonlinearity, facts.hidden_size) == (cell, nonlinearity, hidden)
    assert facts.parameters == parameter_count(counter)


@pytest.mark.parametrize(
    ("tampering", "words"), TAMPERINGS, ids=lambda t: getattr(t, "__name__", "")
)
def test_a_graph_changed_around_the_weights_is_refused_saying_where(
    tampering: Tampering, words: str
) -> None:
    with pytest.raises(NotCanonicalError) as refused:
        check_canonical(tampered(tampering))
    assert words in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_singular_field_given_twice_is_refused() -> None:
    """protobuf merges a repeated singular field (the last value wins): refused, not guessed."""
    with pytest.raises(NotCanonicalError, match=r"ModelProto\.ir_version appears twice"):
        check_canonical(repeated_singular_field())


def test_bytes_that_are_not_onnx_are_refused() -> None:
    with pytest.raises(NotCanonicalError, match="not an ONNX model"):
        check_canonical(b"\xff" * 40)


def test_the_reported_attack_is_real_and_invisible_to_the_weights() -> None:
    """Why the gate is needed: the tampered file keeps the weights the proof reads, and
    onnxruntime runs its local function: every digit 7 past LONG steps."""
    blob = tampered(softmax_backed_by_a_local_function)
    original, kept = recurrent_weights_from_onnx(SHIPPED), recurrent_weights_from_onnx(blob)
    assert np.array_equal(original.w_hh, kept.w_hh)
    assert np.array_equal(original.w_out, kept.w_out)
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    short, long = encode_batch(["41"]), encode_batch(["4" * (LONG + 1)])
    (answer,) = session.run(["probabilities"], {"digits": short})
    assert answer.argmax(-1).tolist() == [[2, 4, 0]]
    (answer,) = session.run(["probabilities"], {"digits": long})
    assert set(answer.argmax(-1).ravel().tolist()) == {7}
