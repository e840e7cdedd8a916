"""Serve the graph that was proved, and a card that says what the file is.

The shipped model changed around its weights (tests.core.tampered: the proof, which reads the
weights, still passes) is refused at load with one line; so is a card whose architecture,
parameter count or opset is not the file's, or whose figures are out of range. Under the fault
policy (app.runtime.registry) such a model stops the start only when it is the default.
"""

import hashlib
import json
import math
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import app.runtime.checks
from app.runtime.models import ModelLoadError
from app.runtime.registry import load_model, load_registry
from tests.app.server import serving
from tests.app.test_registry import serve
from tests.core.tampered import (
    TAMPERINGS,
    Tampering,
    softmax_backed_by_a_local_function,
    tampered,
)

MAX_BYTES = 64 << 20


def add_model(folder: Path, name: str, blob: bytes | None = None, **changes: object) -> Path:
    """A model `name` in folder: counter's card under that name, for its own copy of `blob`
    (counter.onnx when None), the sha256 updated; `changes` sets card fields by dotted path."""
    blob = (folder / "counter.onnx").read_bytes() if blob is None else blob
    (folder / f"{name}.onnx").write_bytes(blob)
    card = json.loads((folder / "counter.json").read_text())
    card.update(name=name, onnx_file=f"{name}.onnx", sha256=hashlib.sha256(blob).hexdigest())
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        target: Any = card
        for key in parents:
            target = target[key]
        target[leaf] = value
    card_path = folder / f"{name}.json"
    card_path.write_text(json.dumps(card))  # NaN written as NaN, as a tamperer's json would
    return card_path


@pytest.mark.parametrize(
    ("tampering", "words"), TAMPERINGS, ids=lambda t: getattr(t, "__name__", "")
)
def test_a_graph_changed_around_the_proved_weights_is_refused_at_load(
    models_copy: Path, tampering: Tampering, words: str
) -> None:
    card = add_model(models_copy, "tampered", tampered(tampering))
    with pytest.raises(ModelLoadError) as refused:
        load_model(card, MAX_BYTES, walked="skip")
    line = str(refused.value)
    assert line.startswith(f"{models_copy / 'tampered.onnx'}: not the graph training exports: ")
    assert words in line
    assert "\n" not in line


# card field (dotted path), a value the shipped counter.onnx contradicts, and the words
DISAGREEING = [
    ("architecture.cell", "gru", "architecture.cell is 'gru', but the file's is 'rnn'"),
    ("architecture.nonlinearity", "relu", "nonlinearity is 'relu', but the file's is 'tanh'"),
    ("architecture.hidden_size", 32, "architecture.hidden_size is 32, but the file's is 16"),
    ("architecture.layers", 2, "architecture.layers is 2, but the file's is 1"),
    ("architecture.parameters", 12345, "architecture.parameters is 12345, but the file's is 618"),
    ("frameworks.opset", 18, "frameworks.opset is 18, but the file's is 17"),
    ("output_name", "logits", "output_name is 'logits', but the file's is 'probabilities'"),
]


@pytest.mark.parametrize(("field", "value", "words"), DISAGREEING)
def test_a_card_that_disagrees_with_the_file_is_refused_naming_the_field(
    models_copy: Path, field: str, value: object, words: str
) -> None:
    card = add_model(models_copy, "claims", None, **{field: value})
    with pytest.raises(ModelLoadError) as refused:
        load_model(card, MAX_BYTES, walked="skip")
    assert str(refused.value).startswith(f"{models_copy / 'claims.onnx'}: the card's ")
    assert str(refused.value).endswith(words)


def test_a_proof_whose_allowance_this_onnxruntime_exceeds_is_refused(models_copy: Path) -> None:
    """A card's proof holds only where every deployed tanh is within its allowance: one that
    allows 1e-9, below any onnxruntime kernel's error, is refused, saying both figures."""
    card = add_model(models_copy, "strict", None, **{"metrics.certificate.tanh_error_bound": 1e-9})
    with pytest.raises(ModelLoadError) as refused:
        load_model(card, MAX_BYTES, walked="skip")
    line = str(refused.value)
    assert "allows each tanh and sigmoid an error of 1e-09" in line
    assert line.endswith("the proof does not hold here")


# card figures out of range: each a validation error naming the figure
OUT_OF_RANGE = [
    (
        {"metrics.reliable_carry_length": -2, "metrics.certificate.proved_carry_length": -2},
        "metrics.reliable_carry_length is -2; it must be at least -1",
    ),
    ({"metrics.certificate.key_digits": 0}, "key_digits is 0; it must be at least 1"),
    ({"metrics.certificate.key_digits": 9}, "key_digits is 9; the service re-runs proofs"),
    ({"metrics.certificate.tanh_error_bound": math.nan}, "tanh_error_bound: Input should be a "),
    ({"metrics.certificate.margin": math.inf}, "margin: Input should be a finite number"),
    ({"metrics.carry_scan.tail_digits": -1}, "tail_digits is -1; it must be at least 0"),
    ({"architecture.hidden_size": 0}, "hidden_size is 0; it must be at least 1"),
]


@pytest.mark.parametrize(("changes", "words"), OUT_OF_RANGE)
def test_a_card_figure_out_of_range_is_refused_not_a_crash(
    models_copy: Path, changes: dict[str, Any], words: str
) -> None:
    card = add_model(models_copy, "ranged", **changes)
    with pytest.raises(ModelLoadError) as refused:
        load_model(card, MAX_BYTES, walked="skip")
    line = str(refused.value)
    assert line.startswith(f"{card}: not a valid model card: ")
    assert words in line


def test_a_fault_nobody_foresaw_skips_that_model_only(
    models_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception the checks did not expect, in a non-default model, is one more skip."""

    def broken(*args: object, **kwargs: object) -> object:
        raise ZeroDivisionError("the proof divided by zero")

    monkeypatch.setattr(app.runtime.checks, "prove_carry", broken)  # only counter claims a proof
    registry = load_registry(models_copy, "counter-post", walked="skip")
    assert registry.names == ["counter-post"]
    [skipped] = registry.skipped
    assert skipped.reason == "cannot be checked: ZeroDivisionError: the proof divided by zero"
    with pytest.raises(ModelLoadError, match="cannot be checked: ZeroDivisionError"):
        load_registry(models_copy, "counter", walked="skip")


# each bad model the server test adds: name -> how (tampered bytes, or card changes)
BAD_MODELS: dict[str, dict[str, Any]] = {
    "negative": {"metrics.reliable_carry_length": -2},
    "no-keys": {"metrics.certificate.key_digits": 0},
    "nan-bound": {"metrics.certificate.tanh_error_bound": math.nan},
    "another-architecture": {
        "architecture.cell": "gru",
        "architecture.hidden_size": 32,
        "architecture.parameters": 12345,
    },
}


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_the_server_starts_serves_and_lists_every_bad_model_as_skipped(
    models_copy: Path, tmp_path: Path
) -> None:
    """`python -m app` on a folder with the default, the attack and every bad card: it
    serves the good models, lists each bad one as skipped, and logs one line for each."""
    add_model(models_copy, "tampered", tampered(softmax_backed_by_a_local_function))
    for name, changes in BAD_MODELS.items():
        add_model(models_copy, name, **changes)
    with serving(models_copy, tmp_path) as (_, base, log):
        listing = _get(f"{base}/models")
        answer = _get(f"{base}/healthz")
    assert answer["status"] == "ok"
    assert [card["name"] for card in listing["models"]] == ["counter", "counter-post"]
    skipped = {entry["file"]: entry["reason"] for entry in listing["skipped"]}
    assert sorted(skipped) == sorted(
        ["tampered.onnx", "another-architecture.onnx"]
        + [f"{name}.json" for name in ("negative", "no-keys", "nan-bound")]
    )
    assert "ModelProto.functions" in skipped["tampered.onnx"]
    assert "architecture.cell is 'gru'" in skipped["another-architecture.onnx"]
    text = log.read_text()
    assert "Traceback" not in text
    for name in ["tampered", *BAD_MODELS]:
        lines = [line for line in text.splitlines() if f"/{name}." in line]
        assert len(lines) == 1, text
        assert "skipping a model" in lines[0]


def test_a_tampered_default_stops_the_start_with_one_line_and_status_2(
    models_copy: Path,
) -> None:
    add_model(models_copy, "tampered", tampered(softmax_backed_by_a_local_function))
    done = serve(models_copy, "COUNTER_DEFAULT_MODEL=tampered")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        f"error: cannot start: {models_copy / 'tampered.onnx'}: not the graph training exports: "
    )
