"""counter-post's walked certificate (core.walk) as the service serves it: with
COUNTER_WALKED_CERTIFICATES=check (the default) it is checked at load and proves K = 17, so
answers within it are proved and unflagged and past it they name the failing input; with skip
nothing of it is claimed, and /models and the V2 metadata say why. Against real servers."""

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.runtime.models import ModelLoadError
from app.runtime.registry import load_model
from core.copying import Invariant
from tests.app.server import get_json, increment, serving

SKIPPED = "walked certificate not checked: COUNTER_WALKED_CERTIFICATES=skip"


@pytest.fixture(scope="module")
def checked(shipped: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("checked")
    with serving(shipped, log, COUNTER_WALKED_CERTIFICATES="check") as (_, url, _):
        yield url


@pytest.fixture(scope="module")
def skipped(shipped: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("skipped")
    with serving(shipped, log, COUNTER_WALKED_CERTIFICATES="skip") as (_, url, _):
        yield url


@pytest.mark.parametrize("number", ["12", "1299", "9" * 17, "4" * 30 + "9" * 17])
def test_answers_within_the_proved_17_are_proved_and_unflagged(checked: str, number: str) -> None:
    result = increment(checked, number, "counter-post")
    assert result["proved"] is True, number
    assert result["flags"]["beyond_reliable_carry"] is False
    assert result["check"]["correct"] is True
    assert result["reliable_carry_length"] == 17


def test_18_nines_is_flagged_naming_the_proved_k_and_the_failing_input(checked: str) -> None:
    result = increment(checked, "9" * 18, "counter-post")
    assert result["proved"] is False
    assert result["flags"]["beyond_reliable_carry"] is True
    assert result["check"]["correct"] is False
    said = (
        "Carry run 18 is past the proved 17; the model fails at 18 "
        "(e.g. 999999999999999999 + 1 gave 0)"
    )
    assert any(w.startswith(said) for w in result["warnings"]), result["warnings"]


def test_models_and_v2_metadata_show_the_walked_certificates_check(checked: str) -> None:
    post = get_json(checked, "/models/counter-post")
    check = post["serving"]["decision"]
    assert check["result"] == "checked"
    assert check["proved_carry_length"] == 17
    assert check["seconds"] > 0
    assert check["refutation"] == "999999999999999999 + 1 gave 0"
    assert post["metrics"]["reliable_carry_length"] == 17
    metadata = get_json(checked, "/v2/models/counter-post")["parameters"]
    assert metadata["decision_check"] == "checked"
    assert metadata["decided_carry_length"] == 17
    assert metadata["reliable_carry_length"] == 17
    assert metadata["decision_check_seconds"] == check["seconds"]


def test_skip_claims_nothing_of_the_certificate_and_says_why(skipped: str) -> None:
    post = get_json(skipped, "/models/counter-post")
    assert post["serving"]["decision"]["result"] == "skipped"
    assert post["serving"]["decision"]["reason"] == SKIPPED
    assert post["serving"]["decision"]["proved_carry_length"] == -1
    assert post["metrics"]["reliable_carry_length"] == -1
    assert post["metrics"]["decision"]["proved_carry_length"] == -1
    assert post["metrics"]["decision"]["reason"] == SKIPPED
    metadata = get_json(skipped, "/v2/models/counter-post")["parameters"]
    assert metadata["decision_check"] == "skipped"
    assert metadata["decision_check_reason"] == SKIPPED
    assert metadata["reliable_carry_length"] == -1
    result = increment(skipped, "12", "counter-post")
    assert result["proved"] is False
    assert result["flags"]["beyond_reliable_carry"] is True


def test_a_walked_certificate_that_does_not_check_is_refused(models_copy: Path) -> None:
    """A set shrunk, the card's sha256 updated to match: the check itself must refuse."""
    card_path = models_copy / "counter-post.json"
    cert = models_copy / "counter-post.cert.npz"
    invariant = Invariant.from_bytes(cert.read_bytes())
    assert invariant.steps > 1  # the walked certificate
    shrink = np.where(np.arange(len(invariant.shapes)) == 0, 0.5, 1.0)[:, None, None]
    blob = Invariant(
        invariant.proved,
        invariant.key_digits,
        invariant.centres,
        invariant.shapes * shrink,
        invariant.keys,
        invariant.steps,
    ).to_bytes()
    cert.write_bytes(blob)
    card = json.loads(card_path.read_text())
    card["metrics"]["decision"]["certificate_sha256"] = hashlib.sha256(blob).hexdigest()
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError) as refused:
        load_model(card_path, 64 << 20, walked="check")
    line = str(refused.value)
    assert line.startswith(f"{cert}: the certificate does not check: ")
    assert "\n" not in line
