"""`python -m training decide`: a shipped graph decided without retraining, its certificate
written beside the card and checked again from the file."""

import shutil
from pathlib import Path

import pytest

from core import decide
from core.card import ModelCard
from core.certify import DEFAULT_TANH_ERROR
from core.copying import Invariant
from core.weights import weights_from_onnx
from tests.training.hand_counter import export_weights, leaky_counter
from training import __main__ as training_main
from training.__main__ import main
from training.decide import SECONDS, certificate_path

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_decide_writes_a_certificate_that_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "counter-post"
    shutil.copy(MODELS / "counter-post.json", model.with_suffix(".json"))
    export_weights(leaky_counter(), str(model.with_suffix(".onnx")))  # the card names this
    assert main(["decide", str(model), "--key-digits", "1", "--limit", "30"]) == 0
    line = capsys.readouterr().out
    assert "decided exactly" in line
    invariant = Invariant.from_bytes(certificate_path(model).read_bytes())
    weights = weights_from_onnx(model.with_suffix(".onnx"))
    checked = decide.check(weights, invariant, DEFAULT_TANH_ERROR)
    assert checked.proved != "unbounded"
    assert f"proved K = {checked.proved};" in line
    decision = ModelCard.model_validate_json(
        model.with_suffix(".json").read_text()
    ).metrics.decision
    assert decision is not None
    assert decision.proved_carry_length == checked.proved
    assert decision.exact
    assert decision.refutation is not None
    assert decision.refutation.nines == checked.proved + 1


def test_decide_stops_its_fits_after_the_seconds_given(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--seconds reaches the search (default: training.decide.SECONDS); a budget below one
    second is refused with a line that says what is accepted."""
    given: list[float | None] = []

    def decide_file(model: Path, *options: object) -> str:
        given.append(options[-1])  # type: ignore[arg-type]
        return f"{model.name}: decided"

    monkeypatch.setattr(training_main, "decide_file", decide_file)
    assert main(["decide", "m", "--walk", "--seconds", "7"]) == 0
    assert main(["decide", "m", "--walk"]) == 0
    assert given == [7, SECONDS]
    with pytest.raises(SystemExit):
        main(["decide", "m", "--seconds", "0"])
    assert "0 is too small: give 1 or more" in capsys.readouterr().err
