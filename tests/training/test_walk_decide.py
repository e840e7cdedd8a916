"""counter-post's reliable carry length is proved up to the run its scan found exact, by a
walked certificate (`python -m training decide --walk`); the run after it fails for real
(tests/core/test_decide.py), so K is decided exactly. Shortened (training.shorten), its sets
grown where its digit trees' children almost close, or trimmed to what they must hold, the
certificate proves the same K with a smaller walk and its file checks in one pass, as it does
with each set scaled a few per cent where that cuts the walk (the polish); sets the check
refuses are never shipped."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core import copying, decide
from core.card import ModelCard
from core.cells import RnnCell
from core.certify import DEFAULT_TANH_ERROR
from core.copying import MAX_STEPS, CertificateError, Invariant
from core.decide import Checked
from core.walk import Walk, walk
from core.weights import RnnWeights, weights_from_onnx
from training import shorten, walk_pool
from training.walk_fit import fit_walk

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def fitted() -> tuple[RnnWeights, Invariant, Checked]:
    """counter-post's weights and the walked fit's certificate of its scan's exact run, before
    any shortening."""
    card = ModelCard.model_validate_json((MODELS / "counter-post.json").read_text())
    weights = weights_from_onnx(MODELS / "counter-post.onnx")
    assert isinstance(weights, RnnWeights)
    found = fit_walk(weights, card.metrics.carry_scan.longest_exact_run)
    assert not isinstance(found, str), found
    return weights, *found


@pytest.mark.slow
def test_counter_post_is_proved_up_to_its_scans_exact_run(
    fitted: tuple[RnnWeights, Invariant, Checked],
) -> None:
    card = ModelCard.model_validate_json((MODELS / "counter-post.json").read_text())
    _, invariant, checked = fitted
    assert invariant.steps > 1
    assert checked.proved == card.metrics.carry_scan.longest_exact_run
    assert checked.margin > 0


def _nodes(weights: RnnWeights, invariant: Invariant) -> int:
    walked = walk(RnnCell(weights, DEFAULT_TANH_ERROR), copying.sets_of(invariant), 8)
    assert walked.failure is None, walked.failure
    return walked.nodes


@pytest.fixture
def one_growth(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortening cut to one growth, at level 3, and no trim: seconds, not the search's
    half minute."""
    monkeypatch.setattr(shorten, "LEVELS", (3,))
    monkeypatch.setattr(shorten, "TRIALS", 1)
    monkeypatch.setattr(shorten, "TRIMS", 0)
    monkeypatch.setattr(shorten, "POLISHES", 0)


@pytest.fixture
def one_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortening cut to one trim, and no growth or polish."""
    monkeypatch.setattr(shorten, "TRIALS", 0)
    monkeypatch.setattr(shorten, "TRIMS", 1)
    monkeypatch.setattr(shorten, "POLISHES", 0)


@pytest.fixture
def one_polish(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortening cut to one round of polish, and no growth or trim."""
    monkeypatch.setattr(shorten, "TRIALS", 0)
    monkeypatch.setattr(shorten, "TRIMS", 0)
    monkeypatch.setattr(shorten, "POLISHES", 1)


@pytest.mark.slow
@pytest.mark.usefixtures("one_growth")
def test_a_shortened_certificate_proves_the_same_with_a_smaller_walk(
    fitted: tuple[RnnWeights, Invariant, Checked],
) -> None:
    weights, invariant, checked = fitted
    grown, grown_checked = shorten.shorten(weights, invariant, checked, DEFAULT_TANH_ERROR)
    assert grown_checked.proved == checked.proved
    assert not np.array_equal(grown.shapes, invariant.shapes)
    assert _nodes(weights, grown) < _nodes(weights, invariant)
    read = Invariant.from_bytes(grown.to_bytes())
    assert decide.check(weights, read, DEFAULT_TANH_ERROR).proved == checked.proved


@pytest.mark.slow
@pytest.mark.usefixtures("one_trim")
def test_trimmed_sets_prove_the_same_with_a_smaller_walk(
    fitted: tuple[RnnWeights, Invariant, Checked],
) -> None:
    """Trimmed to the leaves and entries they hold, the sets still hold them: the check
    (which walks them again, entries included) passes, with fewer nodes."""
    weights, invariant, checked = fitted
    trimmed, trimmed_checked = shorten.shorten(weights, invariant, checked, DEFAULT_TANH_ERROR)
    assert trimmed_checked.proved == checked.proved
    widths = np.linalg.norm(trimmed.shapes, axis=1) / np.linalg.norm(invariant.shapes, axis=1)
    assert widths.max() <= 1 + 1e-12
    assert widths.min() < 1
    assert _nodes(weights, trimmed) < _nodes(weights, invariant)


@pytest.mark.slow
@pytest.mark.usefixtures("one_polish")
def test_polished_sets_prove_the_same_with_a_smaller_walk(
    fitted: tuple[RnnWeights, Invariant, Checked],
) -> None:
    """Each set scaled by 1 - POLISH, 1 or 1 + POLISH, some of them up and some down, the walk
    cut by at least POLISH_GAIN, its readout still sure by SLACK, and the file checks."""
    weights, invariant, checked = fitted
    polished, polished_checked = shorten.shorten(weights, invariant, checked, DEFAULT_TANH_ERROR)
    assert polished_checked.proved == checked.proved
    scale = np.linalg.norm(polished.shapes, axis=(1, 2)) / np.linalg.norm(
        invariant.shapes, axis=(1, 2)
    )
    steps = np.round((scale - 1) / shorten.POLISH)
    factor = 1 + steps * shorten.POLISH
    np.testing.assert_allclose(
        polished.shapes, invariant.shapes * factor[:, None, None], rtol=1e-12
    )
    assert set(steps) == {-1.0, 0.0, 1.0}
    assert _nodes(weights, polished) <= _nodes(weights, invariant) * (1 - shorten.POLISH_GAIN)
    cell = RnnCell(weights, DEFAULT_TANH_ERROR)
    assert walk(cell, copying.sets_of(polished), 8).slack >= shorten.SLACK
    read = Invariant.from_bytes(polished.to_bytes())
    assert decide.check(weights, read, DEFAULT_TANH_ERROR).proved == checked.proved


@pytest.mark.slow
@pytest.mark.usefixtures("one_polish")
@pytest.mark.parametrize("refused", [1, 2])
def test_the_polish_ships_when_the_check_refuses_the_trim_after_it(
    fitted: tuple[RnnWeights, Invariant, Checked], monkeypatch: pytest.MonkeyPatch, refused: int
) -> None:
    """After the polish the sets are trimmed once more. The polish's rounds are not checked
    as they go: when the check refuses that trim, the last round ships; when it refuses that
    too, what the polish started from."""
    weights, invariant, checked = fitted
    monkeypatch.setattr(shorten, "TRIMS", 1)
    rounds: list[tuple[Invariant, copying.Sets, Walk]] = []
    polish = shorten._polished

    def polish_and_keep(*args: object) -> list[tuple[Invariant, copying.Sets, Walk]]:
        rounds.extend(polish(*args))  # type: ignore[arg-type]
        return rounds

    calls: list[Invariant] = []

    def refuse(weights: RnnWeights, certificate: Invariant, error: float) -> Checked:
        calls.append(certificate)
        if len(calls) <= refused:
            raise CertificateError("refused")
        return check(weights, certificate, error)

    check = walk_pool.check  # the search's
    monkeypatch.setattr(shorten, "_polished", polish_and_keep)
    monkeypatch.setattr(walk_pool, "check", refuse)
    shipped, shipped_checked = shorten.shorten(weights, invariant, checked, DEFAULT_TANH_ERROR)
    ((polished, _, _),) = rounds
    assert calls[1] is polished
    assert _nodes(weights, calls[0]) < _nodes(weights, polished)
    assert shipped_checked == decide.check(weights, shipped, DEFAULT_TANH_ERROR)
    if refused == 1:
        assert shipped is polished
    else:
        assert _nodes(weights, polished) < _nodes(weights, shipped)


@pytest.mark.slow
def test_the_polish_walks_no_trial_its_scalings_expect_to_fall_short(
    fitted: tuple[RnnWeights, Invariant, Checked], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial is walked only when the scalings in it expect to cut the walk by POLISH_GAIN."""
    weights, invariant, _ = fitted
    cell = RnnCell(weights, DEFAULT_TANH_ERROR)
    best = replace(invariant, steps=MAX_STEPS)
    sets = copying.sets_of(best)
    last = walk(cell, sets, MAX_STEPS, hold=True, trace=True)
    enough = math.ceil(shorten.POLISH_GAIN * last.nodes)
    walked: list[object] = []
    monkeypatch.setattr(shorten, "_closing", lambda *args: walked.append(args))
    for expected, trials in ((enough - 1, 0), (enough, 1)):
        gains = [(-expected, 0, 1 + shorten.POLISH)]
        monkeypatch.setattr(shorten, "_scalings", lambda *_, gains=gains: gains)
        assert shorten._polished(cell, best, sets, last) == []
        assert len(walked) == trials


@pytest.mark.slow
@pytest.mark.usefixtures("one_growth")
@pytest.mark.parametrize("refused", [1, 2])
def test_certificates_the_check_refuses_are_not_taken(
    fitted: tuple[RnnWeights, Invariant, Checked], monkeypatch: pytest.MonkeyPatch, refused: int
) -> None:
    """One growth, then one trim: when the check refuses the trimmed certificate, the grown
    one is shipped; when it refuses that too, the fitted one."""
    weights, invariant, checked = fitted
    monkeypatch.setattr(shorten, "TRIMS", 1)
    calls: list[Invariant] = []
    check = walk_pool.check  # the search's

    def refuse(weights: RnnWeights, certificate: Invariant, error: float) -> Checked:
        calls.append(certificate)
        if len(calls) <= refused:
            raise CertificateError("refused")
        return check(weights, certificate, error)

    monkeypatch.setattr(walk_pool, "check", refuse)
    shipped, shipped_checked = shorten.shorten(weights, invariant, checked, DEFAULT_TANH_ERROR)
    trimmed, grown = calls
    assert _nodes(weights, trimmed) < _nodes(weights, grown) < _nodes(weights, invariant)
    if refused == 1:
        assert shipped is grown
        assert shipped_checked.proved == checked.proved
    else:
        assert (shipped, shipped_checked) == (invariant, checked)


@pytest.mark.slow
def test_a_walk_past_the_budget_is_left_as_it_is(
    fitted: tuple[RnnWeights, Invariant, Checked], monkeypatch: pytest.MonkeyPatch
) -> None:
    weights, invariant, checked = fitted
    monkeypatch.setattr(shorten, "LARGEST", 1000)
    assert shorten.shorten(weights, invariant, checked, DEFAULT_TANH_ERROR) == (invariant, checked)
