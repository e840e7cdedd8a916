"""The decided carry length as the service serves it: the certificate is checked at load, the
refuting input run on the served graph, and answers say what is known: proved within K, and
past it the input that fails. Against a real server (`python -m app` on a loopback port)."""

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import sync_playwright

from app.runtime.models import ModelLoadError
from app.runtime.registry import load_model
from core.card import ModelCard
from core.copying import Invariant
from core.weights import RnnWeights
from tests.app.hand_cards import hand_card
from tests.app.server import get_json, increment, serving
from tests.app.test_docs_browser import CHROMIUM, CHROMIUM_ARGS
from tests.training.hand_counter import copy_slip_counter, leaky_counter
from training.decide import certificate_path, decide_file

LEAKY = "counter-leaky"
SLIP = "counter-slip"


def _hand_card(folder: Path, name: str, weights: RnnWeights) -> None:
    """A hand counter (the leaky one: proved up to 15 nines, wrong from 16; the slip:
    4333 + 1 -> 7334) with a card made from counter-post's."""
    card = hand_card(folder, name, weights, folder / "counter-post.json")
    (folder / f"{name}.json").write_text(json.dumps(card))


@pytest.fixture(scope="module")
def decided(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped models plus two hand counters, each decided by `python -m training decide`."""
    folder = tmp_path_factory.mktemp("models")
    shipped = Path(__file__).resolve().parents[2] / "models"
    for path in shipped.glob("*"):
        if path.suffix in (".json", ".onnx"):
            shutil.copy(path, folder / path.name)
    _hand_card(folder, LEAKY, leaky_counter())
    _hand_card(folder, SLIP, copy_slip_counter())
    decide_file(folder / "counter-post", key_digits=2, limit=30)
    decide_file(folder / LEAKY, key_digits=1, limit=30)
    decide_file(folder / SLIP, key_digits=1, limit=30)
    return folder


@pytest.fixture(scope="module")
def base(decided: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(decided, tmp_path_factory.mktemp("log")) as (_, url, _):
        yield url


def test_models_show_the_checked_decision(base: str) -> None:
    leaky = get_json(base, f"/models/{LEAKY}")
    check = leaky["serving"]["decision"]
    assert check["result"] == "checked"
    assert check["proved_carry_length"] == leaky["metrics"]["decision"]["proved_carry_length"]
    assert check["proved_carry_length"] >= 1
    assert leaky["metrics"]["reliable_carry_length"] == check["proved_carry_length"]
    assert check["refutation"].endswith(f"gave {leaky['metrics']['decision']['refutation']['got']}")
    post = get_json(base, "/models/counter-post")
    failure = post["metrics"]["carry_scan"]["first_failure"]
    refuted = f"{failure['example']} + 1 gave {failure['got']}"
    assert post["serving"]["decision"]["refutation"] == refuted
    # the v2 model metadata says the same
    metadata = get_json(base, f"/v2/models/{LEAKY}")["parameters"]
    assert metadata["decision_check"] == "checked"
    assert metadata["decided_carry_length"] == check["proved_carry_length"]
    assert metadata["reliable_carry_length"] == check["proved_carry_length"]
    assert metadata["decision_check_seconds"] == check["seconds"]


def test_answers_within_the_decided_run_are_proved(base: str) -> None:
    k = get_json(base, f"/models/{LEAKY}")["serving"]["decision"]["proved_carry_length"]
    for number in ["12", "1299", "3" + "9" * k, "7" * 40 + "9" * k]:
        result = increment(base, number, LEAKY)
        assert result["proved"] is True, number
        assert result["flags"]["beyond_reliable_carry"] is False
        assert result["check"]["correct"] is True


def test_answers_past_it_name_the_failing_input(base: str) -> None:
    leaky = get_json(base, f"/models/{LEAKY}")["metrics"]["decision"]
    k, failure = leaky["proved_carry_length"], leaky["refutation"]
    result = increment(base, "4" + "9" * (k + 1), LEAKY)
    assert result["flags"]["beyond_reliable_carry"] is True
    said = (
        f"Carry run {k + 1} is past the proved {k}; the model fails at {k + 1} "
        f"(e.g. {failure['example']} + 1 gave {failure['got']})"
    )
    assert any(w.startswith(said) for w in result["warnings"]), result["warnings"]
    failure = get_json(base, "/models/counter-post")["metrics"]["carry_scan"]["first_failure"]
    said = (
        f"the model fails at {failure['nines']} (e.g. {failure['example']} + 1 gave "
        f"{failure['got']})"
    )
    post = increment(base, failure["example"], "counter-post")
    assert any(said in w for w in post["warnings"]), post["warnings"]


def test_a_model_that_slips_with_no_nine_at_the_end_flags_every_answer_and_says_why(
    base: str,
) -> None:
    """A number with no trailing nine answered wrong (found by the decision's copying search,
    run again on the served graph at load) decides K = -1: no answer is proved, and each says
    which input fails, not a carry run it is past."""
    model = get_json(base, f"/models/{SLIP}")
    decision = model["metrics"]["decision"]
    assert decision["proved_carry_length"] == -1
    failure = decision["refutation"]
    assert failure["nines"] == 0
    assert "4333" in failure["example"]
    check = model["serving"]["decision"]
    assert check["refutation"] == f"{failure['example']} + 1 gave {failure['got']}"
    for number in ["12", failure["example"]]:
        result = increment(base, number, SLIP)
        assert result["proved"] is False
        assert result["flags"]["beyond_reliable_carry"] is True
        said = f"no nine at the end wrong (e.g. {failure['example']} + 1 gave {failure['got']})"
        assert any(said in w for w in result["warnings"]), result["warnings"]
    assert increment(base, failure["example"], SLIP)["check"]["correct"] is False


def _card_path(decided: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    shutil.copytree(decided, folder)
    return folder / f"{LEAKY}.json"


def test_a_changed_certificate_is_refused(decided: Path, tmp_path: Path) -> None:
    card_path = _card_path(decided, tmp_path)
    cert = certificate_path(card_path.with_suffix(""))
    cert.write_bytes(cert.read_bytes() + b"\0")
    with pytest.raises(ModelLoadError, match="sha256 differs"):
        load_model(card_path, 64 << 20)


def test_a_certificate_that_does_not_check_is_refused(decided: Path, tmp_path: Path) -> None:
    """A shrunk set, with the card's sha256 updated to match: the check itself must refuse."""
    card_path = _card_path(decided, tmp_path)
    cert = certificate_path(card_path.with_suffix(""))
    invariant = Invariant.from_bytes(cert.read_bytes())
    shapes = (
        invariant.shapes * np.where(np.arange(len(invariant.shapes)) == 9, 0.5, 1.0)[:, None, None]
    )
    blob = Invariant(invariant.proved, invariant.key_digits, invariant.centres, shapes).to_bytes()
    cert.write_bytes(blob)
    card = json.loads(card_path.read_text())
    card["metrics"]["decision"]["certificate_sha256"] = hashlib.sha256(blob).hexdigest()
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="the certificate does not check"):
        load_model(card_path, 64 << 20)


def test_a_refutation_the_graph_answers_right_is_refused(decided: Path, tmp_path: Path) -> None:
    card_path = _card_path(decided, tmp_path)
    card = ModelCard.model_validate_json(card_path.read_text())
    decision = card.metrics.decision
    assert decision is not None
    assert decision.refutation is not None
    right = decision.refutation.model_copy(update={"example": "1" + "9" * 3, "nines": 3})
    raw = json.loads(card_path.read_text())
    raw["metrics"]["decision"]["refutation"] = right.model_dump()
    card_path.write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match="does not refute"):
        load_model(card_path, 64 << 20)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing")
def test_the_explorer_card_shows_the_decided_k_and_the_failing_input(base: str) -> None:
    decision = get_json(base, f"/models/{LEAKY}")["metrics"]["decision"]
    k, failure = decision["proved_carry_length"], decision["refutation"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.goto(f"{base}/")
            page.wait_for_selector("body[data-ready]")
            page.check(f"#model-{LEAKY}")
            card = page.locator("#card")
            card.get_by_text("Decided carry length").wait_for()
            text = card.inner_text()
            assert f"Proved K = {k}" in text
            assert f"decided exactly: the model fails at {k + 1}" in text
            assert f"{failure['example']} + 1 gave {failure['got']}" in text
            card.get_by_role("button", name=f"Try {failure['example']}").click()
            page.wait_for_selector(f'#verdict[data-number="{failure["example"]}"]')
            assert "Wrong" in page.locator("#verdict").inner_text()
            page.check(f"#model-{SLIP}")
            card.get_by_text("no nine at the end").wait_for()
            assert "Nothing proved" in card.inner_text()
        finally:
            browser.close()
