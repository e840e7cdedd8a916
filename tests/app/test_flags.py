"""Honest flags on counter-post (the post's recipe): they come from its card, before the answer.

The card's reliable carry length K is exact: every carry of k <= K nines (then any digit) is
right, and its first failure is recorded. So an input past K is flagged, and the recorded
failure really is wrong; an input within K is not flagged.
"""

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.settings import Settings
from core.card import ModelCard
from tests.app.conftest import post, started


def ask(client: TestClient, number: str, **extra: Any) -> dict[str, Any]:
    response = post(client, "/increment", {"number": number, "model": "counter-post", **extra})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def reliable(card: ModelCard) -> int:
    if card.reliable_carry is None:
        pytest.fail("counter-post is expected to have a finite reliable carry length")
    return card.reliable_carry


def test_the_recorded_carry_failure_is_flagged_and_checked_wrong(
    client: TestClient, post_card: ModelCard
) -> None:
    failure = post_card.metrics.carry_first_failure
    assert failure is not None
    if failure.next_digit is None:
        number = "9" * failure.nines
    else:  # the carry's digits depend only on the nines and the digit after them
        number = "1" + str(failure.next_digit) + "9" * failure.nines
    result = ask(client, number)
    assert result["carry_run"] == failure.nines > reliable(post_card)
    assert result["reliable_carry_length"] == reliable(post_card)
    assert result["carry_certified"] is False
    assert result["flags"]["beyond_reliable_carry"] is True
    assert result["check"]["correct"] is False
    assert result["output"] != result["check"]["expected"]
    assert any(
        f"more than this model's reliable carry length ({reliable(post_card)})" in w
        for w in result["warnings"]
    )
    assert any(w.startswith("The model's answer is wrong") for w in result["warnings"])


def test_carries_within_the_reliable_length_are_not_flagged(
    client: TestClient, post_card: ModelCard
) -> None:
    k = reliable(post_card)
    nines = ask(client, "9" * k)  # covered exactly by the card's scan: every digit right
    assert nines["flags"]["beyond_reliable_carry"] is False
    assert nines["check"]["correct"] is True
    assert not any("reliable carry" in w for w in nines["warnings"])
    assert ask(client, "4" + "9" * k)["flags"]["beyond_reliable_carry"] is False
    assert ask(client, "4" + "9" * (k + 1))["flags"]["beyond_reliable_carry"] is True


def test_flags_depend_on_the_card_not_on_the_answer(
    client: TestClient, post_card: ModelCard
) -> None:
    k = reliable(post_card)
    for d in "012345678":  # right or wrong, every input past K raises the same flag
        assert ask(client, d + "9" * (k + 1), detail="none")["flags"]["beyond_reliable_carry"]


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
