"""Flags a user can rely on: `proved` and the carry flags come from the proof on the card (which
the service re-proved at load), before the answer; a wrong answer is never `proved`."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.runtime.engine import EngineOptions, answer
from app.runtime.models import Registry
from app.settings import Settings
from core.card import ModelCard
from core.codec import carry_run
from tests.app.client import post, started


def ask(client: TestClient, number: str, model: str = "counter-post", **extra: Any) -> Any:
    response = post(client, "/increment", {"number": number, "model": model, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def _past(card: ModelCard) -> int:
    """A run of nines the proof does not cover (counter-post's proof is finite or empty)."""
    reliable = card.reliable_carry
    if reliable is None:
        pytest.fail("counter-post is expected not to be proved for every run of nines")
    return reliable + 1


def test_an_input_past_the_proof_is_flagged_and_says_so(
    client: TestClient, post_card: ModelCard
) -> None:
    k = _past(post_card)
    result = ask(client, "4" + "9" * k)
    assert result["carry_run"] == k
    assert result["reliable_carry_length"] == post_card.metrics.reliable_carry_length
    assert result["proved"] is False
    assert result["flags"]["beyond_reliable_carry"] is True
    assert any("no proof covers" in w or "No proof covers" in w for w in result["warnings"])


def test_the_scans_recorded_failure_is_flagged_and_checked_wrong(
    client: TestClient, post_card: ModelCard
) -> None:
    failure = post_card.metrics.carry_scan.first_failure
    assert failure is not None
    result = ask(client, failure.example)
    assert result["proved"] is False
    assert result["flags"]["known_failing_carry"] is True
    assert result["check"] == {"correct": False, "expected": failure.expected}
    assert result["output"] == failure.got
    assert any("carry scan found wrong answers" in w for w in result["warnings"])
    assert any(w.startswith("The model's answer is wrong") for w in result["warnings"])


def test_proved_answers_raise_no_carry_flag(client: TestClient) -> None:
    for number in ("0", "1299", "8" + "9" * 300, "9" * 1000):
        result = ask(client, number, model="counter", detail="none")
        assert result["proved"] is True
        assert result["flags"]["beyond_reliable_carry"] is False
        assert result["check"]["correct"] is True


def test_flags_depend_on_the_card_not_on_the_answer(
    client: TestClient, post_card: ModelCard
) -> None:
    k = _past(post_card)
    for d in "012345678":  # right or wrong, every input past the proof is flagged alike
        result = ask(client, d + "9" * k, detail="none")
        assert result["flags"]["beyond_reliable_carry"] is True
        assert result["proved"] is False


@pytest.mark.slow
@pytest.mark.parametrize("name", ["counter", "counter-post"])
def test_no_wrong_answer_is_ever_proved_below_a_million(name: str, shipped: Path) -> None:
    """Every number below 10^6 and every "t d 9^k" for k <= 40 (3-digit t): wherever an
    answer says proved, it is right. bench/exhaustive.py runs every number below 10^7."""
    with started(Settings(models_dir=shipped)) as client:
        registry: Registry = client.app.state.service.registry  # type: ignore[attr-defined]
        model = registry.models[name]
        options = EngineOptions(0.9, 5, 64)
        numbers = [str(n) for n in range(10**6)]
        tails = [f"{t:03d}{d}" for d in range(9) for t in range(1000)]
        numbers += [tail + "9" * k for k in range(41) for tail in tails]
        proved_wrong = 0
        for start in range(0, len(numbers), 50_000):
            chunk = numbers[start : start + 50_000]
            for number, result in zip(chunk, answer(model, chunk, "none", options), strict=True):
                assert result["proved"] == model.card.proves(carry_run(number))
                proved_wrong += result["proved"] and not result["check"]["correct"]
        assert proved_wrong == 0


def test_length_beyond_the_tested_length_is_flagged(models_copy: Path) -> None:
    card_path = models_copy / "counter-post.json"
    card = json.loads(card_path.read_text())
    card["metrics"]["tested_length"] = 5  # the card is data; the .onnx (and its sha256) is intact
    card_path.write_text(json.dumps(card))
    with started(Settings(models_dir=models_copy)) as client:
        assert ask(client, "12345")["flags"]["beyond_tested_length"] is False
        long = ask(client, "123456")
        assert long["flags"]["beyond_tested_length"] is True
        assert any("longer than any length this model was tested" in w for w in long["warnings"])


def test_low_confidence_threshold_is_a_setting(models_copy: Path) -> None:
    with started(Settings(models_dir=models_copy, low_confidence=1.0)) as client:
        result = ask(client, "1299")  # no float32 softmax gives exactly 1.0 to all 5 steps
        assert result["flags"]["low_confidence"] is True
        assert result["flags"]["low_confidence_count"] == len(
            result["flags"]["low_confidence_steps"]
        )
        assert result["flags"]["low_confidence_count"] >= 1
        assert any("probability below 1.0" in w for w in result["warnings"])
    with started(Settings(models_dir=models_copy, low_confidence=1e-6)) as client:
        assert ask(client, "1299")["flags"]["low_confidence"] is False


def test_probabilities_are_float32_written_as_json_numbers(client: TestClient) -> None:
    steps = ask(client, "1299", model="counter")["steps"]
    assert all(isinstance(p, float) for step in steps for p in step["probabilities"])
    assert np.isclose(sum(steps[0]["probabilities"]), 1.0, atol=1e-3)
