"""core.card: a figure out of the range it can take is a validation error that names it, so a
bad card is refused with one line instead of failing later inside the proof or the warm-up."""

import json
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.card import ModelCard

MODELS = Path(__file__).parents[2] / "models"


def _card_with(path: str, value: object) -> bytes:
    card: Any = json.loads((MODELS / "counter.json").read_text())
    *parents, leaf = path.split(".")
    target = card
    for key in parents:
        target = target[key]
    target[leaf] = value
    return json.dumps(card).encode()  # NaN and Infinity as Python's json writes them


@pytest.mark.parametrize("name", ["counter", "counter-post"])
def test_the_shipped_cards_are_in_range(name: str) -> None:
    ModelCard.model_validate_json((MODELS / f"{name}.json").read_bytes())


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        (
            "metrics.reliable_carry_length",
            -2,
            "reliable_carry_length is -2; it must be at least -1",
        ),
        ("metrics.certificate.proved_carry_length", -5, "proved_carry_length is -5"),
        ("metrics.certificate.key_digits", 0, "key_digits is 0; it must be at least 1"),
        ("metrics.certificate.key_digits", 5, "key_digits is 5; the service re-runs proofs with"),
        ("metrics.certificate.search_limit", 10**9, "search_limit is 1000000000; the service"),
        ("metrics.certificate.transient_steps", -1, "transient_steps is -1"),
        ("metrics.certificate.tanh_error_bound", -1e-5, "tanh_error_bound is -1e-05"),
        ("metrics.carry_scan.failing_runs", [[7, 3]], "failing_runs has [7, 3]"),
        ("architecture.layers", 0, "layers is 0; it must be at least 1"),
    ],
)
def test_a_figure_out_of_range_is_named(path: str, value: object, words: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ModelCard.model_validate_json(_card_with(path, value))
    assert words in refused.value.errors()[0]["msg"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    "path", ["metrics.certificate.tanh_error_bound", "metrics.certificate.margin"]
)
def test_a_bound_that_is_not_finite_is_refused(path: str, value: float) -> None:
    with pytest.raises(ValidationError) as refused:
        ModelCard.model_validate_json(_card_with(path, value))
    first = refused.value.errors()[0]
    assert ".".join(map(str, first["loc"])) == path
    assert first["msg"] == "Input should be a finite number"
