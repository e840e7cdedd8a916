"""A decision that covers every run of nines, as the service serves it: the certificate's
carrying set is re-checked at load, the card's "unbounded" becomes the served reliable carry
length, and an answer with a run far past any tested one is proved. Against a real server."""

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from app.runtime.models import ModelLoadError
from app.runtime.registry import load_model
from core.copying import Invariant
from tests.app.hand_cards import hand_card
from tests.app.server import get_json, increment, serving
from tests.training.hand_counter import hand_counter
from training.decide import certificate_path, decide_file

LASTING = "counter-lasting"


@pytest.fixture(scope="module")
def decided(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped default model beside the exact hand counter (its carry an attractor), with a
    card made from counter-post's (no scan failure, no dynamics claim), decided."""
    folder = tmp_path_factory.mktemp("models")
    shipped = Path(__file__).resolve().parents[2] / "models"
    for name in ("counter.json", "counter.onnx"):
        shutil.copy(shipped / name, folder / name)
    card = hand_card(folder, LASTING, hand_counter(), shipped / "counter-post.json")
    card.update(dynamics=None)
    scan = card["metrics"]["carry_scan"]
    scan.update(failing_runs=[], first_failure=None, longest_exact_run=scan["scanned_up_to"])
    (folder / f"{LASTING}.json").write_text(json.dumps(card))
    line = decide_file(folder / LASTING, key_digits=1, limit=30)
    assert "proved for every run" in line, line
    return folder


@pytest.fixture(scope="module")
def base(decided: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(decided, tmp_path_factory.mktemp("log")) as (_, url, _):
        yield url


def test_every_run_is_served_as_proved(base: str) -> None:
    card = get_json(base, f"/models/{LASTING}")
    assert card["serving"]["decision"]["result"] == "checked"
    assert card["serving"]["decision"]["proved_carry_length"] == "unbounded"
    assert card["metrics"]["reliable_carry_length"] == "unbounded"
    result = increment(base, "5" + "9" * 2000, LASTING)
    assert result["proved"] is True
    assert result["flags"]["beyond_reliable_carry"] is False
    assert result["check"]["correct"] is True


def test_a_carrying_set_that_does_not_close_is_refused(decided: Path, tmp_path: Path) -> None:
    """The carrying set shrunk, the card's sha256 updated to match: the load-time check must
    refuse it, not serve "unbounded"."""
    folder = tmp_path / "models"
    shutil.copytree(decided, folder)
    card_path = folder / f"{LASTING}.json"
    cert = certificate_path(card_path.with_suffix(""))
    invariant = Invariant.from_bytes(cert.read_bytes())
    assert invariant.carrying_shape is not None
    shrunk = replace(invariant, carrying_shape=invariant.carrying_shape / 1e3)
    cert.write_bytes(shrunk.to_bytes())
    card = json.loads(card_path.read_text())
    card["metrics"]["decision"]["certificate_sha256"] = hashlib.sha256(
        cert.read_bytes()
    ).hexdigest()
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="carrying set read with a 9 leaves itself"):
        load_model(card_path, 64 << 20)
