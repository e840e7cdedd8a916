"""The steady fit (training.walk_fit.fit_steady): sets fitted to the copying states past the
carry's transient, keyed by three digits, with the states that absorb the carry walked into
them; what it returns is a certificate the one-pass check accepts, from its file too."""

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from core import carrying, copying, decide
from core.cells import RnnCell
from core.certify import DEFAULT_TANH_ERROR
from core.copying import MAX_STEPS, Invariant
from core.decide import Checked
from core.walk import OUT_OF_TIME, Walk
from core.weights import RnnWeights
from tests.training.hand_counter import answer_of, hand_counter, leaky_counter
from training import carrying as carrying_search
from training import decide as decide_module
from training import walk_fit, walk_pool
from training.walk_fit import ENTRY_STEPS, STEADY_KEYS, WALK_STEPS, fit_steady


def test_the_steady_fit_finds_a_certificate_that_walks_its_entries() -> None:
    weights = leaky_counter()
    found = fit_steady(weights, 2)
    assert not isinstance(found, str), found
    invariant, checked = found
    assert (invariant.entry_steps, invariant.key_digits) == (ENTRY_STEPS, STEADY_KEYS)
    assert checked.proved == 2
    assert checked.margin > 0
    read = Invariant.from_bytes(invariant.to_bytes())
    assert decide.check(weights, read, DEFAULT_TANH_ERROR).proved == 2


@pytest.mark.parametrize("deepen", [True, False])
def test_where_growing_reads_wrong_the_fit_walks_deeper_instead(
    monkeypatch: pytest.MonkeyPatch, deepen: bool
) -> None:
    """When a round's growth makes a set read wrong (here its second walk is told so), the fit
    goes back to the first round that left few strings open and follows them to MAX_STEPS
    digits (docs/proof.md, "Deeper, not wider"); the certificate it ends with checks. When no
    round left few open, the readout failure is the reason."""
    weights = leaky_counter()
    walked: list[int] = []
    pooled = walk_pool.pooled_walk

    def told(cell: RnnCell, sets: copying.Sets, longest: int, **options: object) -> Walk:
        found = pooled(cell, sets, longest, **options)  # type: ignore[arg-type]
        if options.get("roots") is not None:
            return found
        walked.append(longest)
        if len(walked) == 2:
            return replace(found, slack=-1.0, failure="digit 3 is not sure to win")
        return found

    monkeypatch.setattr(walk_fit, "pooled_walk", told)
    if not deepen:
        monkeypatch.setattr(walk_fit, "DEEPEN_OPEN", -1)
    found = fit_steady(weights, 2)
    if not deepen:
        assert found == "digit 3 is not sure to win"
        assert walked == [WALK_STEPS, WALK_STEPS]
        return
    assert not isinstance(found, str), found
    assert walked[:3] == [WALK_STEPS, WALK_STEPS, MAX_STEPS]
    assert found[0].steps == MAX_STEPS
    assert decide.check(weights, found[0], DEFAULT_TANH_ERROR).proved == 2


def test_keys_whose_states_spread_are_keyed_one_digit_deeper() -> None:
    """spread_keys splits a key whose states spread past SPREAD_WIDE into its ten keys one
    digit older, and only that one: the result is still a complete suffix code."""
    rng = np.random.default_rng(0)
    history = rng.integers(0, 100, 4000)  # two digits; the last names the one-digit key
    states = rng.normal(0.0, 0.01, (4000, 3))
    wide = history % 10 == 3
    states[wide, 0] += history[wide] // 10 * 0.2  # key 3's states spread by the older digit
    keys = copying.uniform_keys(1)
    deeper = walk_fit.spread_keys(keys, states, history)
    expected = sorted([copying.code(str(d)) for d in range(10) if d != 3])
    expected += [copying.code(f"{older}3") for older in range(10)]
    assert deeper.tolist() == sorted(expected)
    assert copying.suffix_code(deeper).max() == 2


@pytest.mark.parametrize("ends", ["reads wrong", OUT_OF_TIME])
def test_where_the_three_digit_keys_fail_the_spread_keys_are_tried(
    monkeypatch: pytest.MonkeyPatch, ends: str
) -> None:
    """When the fit with three-digit keys fails (its first walk is told to read wrong here),
    the fit is tried once more with the keys spread_keys deepens (here key 999 split in ten),
    walking MAX_STEPS digits deep as soon as a round leaves few strings open, and the
    certificate it finds checks with four-digit keys. A fit out of time is not tried again."""
    weights = leaky_counter()
    walked: list[tuple[int, int, int]] = []  # per walk of the sets: keys, depth, strings open
    pooled = walk_pool.pooled_walk

    def told(cell: RnnCell, sets: copying.Sets, longest: int, **options: object) -> Walk:
        found = pooled(cell, sets, longest, **options)  # type: ignore[arg-type]
        if options.get("roots") is None:
            walked.append((len(sets.keys), longest, len(found.open_targets)))
            if len(walked) == 1 and ends == OUT_OF_TIME:
                return replace(found, failure=OUT_OF_TIME)
            if len(walked) == 1:
                return replace(found, slack=-1.0, failure="digit 3 is not sure to win")
        return found

    def split_999(keys: copying.Ints, *_: object) -> copying.Ints:
        deeper = [copying.code(f"{older}999") for older in range(10)]
        return np.sort(np.concatenate([keys[keys != copying.code("999")], deeper]))

    monkeypatch.setattr(walk_fit, "pooled_walk", told)
    monkeypatch.setattr(walk_fit, "spread_keys", split_999)
    found = fit_steady(weights, 2)
    if ends == OUT_OF_TIME:
        assert isinstance(found, str)
        assert found.startswith(OUT_OF_TIME), found
        assert [keys for keys, *_ in walked] == [1000]
        return
    assert not isinstance(found, str), found
    assert [keys for keys, *_ in walked[:2]] == [1000, 1009]
    if walked[1][2] > 0:  # the second fit's first round left strings open: deeper at once
        assert walked[2][:2] == (1009, MAX_STEPS)
    invariant, _ = found
    assert invariant.key_digits == 4
    assert copying.code("0999") in invariant.codes()
    assert decide.check(weights, invariant, DEFAULT_TANH_ERROR).proved == 2


def test_when_no_fit_closes_the_reason_is_the_last_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    """decide --walk tries the one-step fit, the walked fit, then the steady fit: when none
    closes, the card's reason is the steady fit's, not the first one's."""
    monkeypatch.setattr(decide_module, "fit", lambda *_: "the one-step sets fail")
    monkeypatch.setattr(decide_module, "fit_walk", lambda *_, **__: "the walked sets fail")
    monkeypatch.setattr(decide_module, "fit_steady", lambda *_, **__: "the steady sets fail")
    weights = leaky_counter()
    decision = decide_module.decide_carry(weights, answer_of(weights), limit=30, walk=True)
    assert decision.proved == -1
    assert decision.reason == "the steady sets fail"


def test_a_search_out_of_time_ends_with_k_a_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its seconds the walked fit stops where it is, the steady fit is not begun, and
    the decision proves what it checked before (nothing here) with the reason on the card."""
    monkeypatch.setattr(decide_module, "fit", lambda *_: "the one-step sets fail")
    begun: list[int] = []

    def steady(weights: RnnWeights, proved: int, *_: object, **__: object) -> str:
        begun.append(proved)
        return "the steady sets fail"

    monkeypatch.setattr(decide_module, "fit_steady", steady)
    weights = leaky_counter()
    answer = answer_of(weights)
    decision = decide_module.decide_carry(weights, answer, limit=2, walk=True, seconds=0)
    assert (decision.proved, decision.invariant) == (-1, None)
    assert decision.reason.startswith(OUT_OF_TIME), decision.reason
    assert begun == []
    # in time, the walked fit runs its rounds and fails, and the steady fit begins at K = 2
    timely = decide_module.decide_carry(weights, answer, limit=2, walk=True, seconds=None)
    assert (timely.reason, begun[:1]) == ("the steady sets fail", [2])


def test_given_a_carrying_set_the_steady_fit_proves_every_run_in_one_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The carrying set's images are walked with the sets, so the fit checks the certificate
    with the set attached at once: every run proved, and no second check of it without."""
    weights = hand_counter()
    carry = carrying_search.fit(RnnCell(weights, DEFAULT_TANH_ERROR), 1000, 8)
    assert isinstance(carry, carrying.Set)
    checks: list[Invariant] = []
    check = walk_pool.check  # the search's

    def counted(weights: RnnWeights, invariant: Invariant, tanh_error: float) -> Checked:
        checks.append(invariant)
        return check(weights, invariant, tanh_error)

    monkeypatch.setattr(walk_pool, "check", counted)
    found = fit_steady(weights, carry.nines, carry=carry)
    assert not isinstance(found, str), found
    invariant, checked = found
    assert checked.proved == "unbounded"
    assert invariant.carrying_centre is not None
    assert len(checks) == 1
    read = Invariant.from_bytes(invariant.to_bytes())
    assert decide.check(weights, read, DEFAULT_TANH_ERROR).proved == "unbounded"


def test_a_round_the_check_takes_at_once_is_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked before it is walked (here every round grown from open strings), the fit returns
    the certificate it returns walking every round, without the last round's walks."""
    walked = fit_steady(leaky_counter(), 2)
    assert not isinstance(walked, str), walked
    events: list[str] = []
    real_walk, real_check = walk_pool.pooled_walk, walk_pool.check

    def walk_logged(*args: Any, **options: Any) -> Walk:
        result = real_walk(*args, **options)
        events.append("closed" if result.failure is None else "open")
        return result

    def check_logged(*args: Any) -> Checked:
        try:
            result = real_check(*args)
        except copying.CertificateError:
            events.append("refused")
            raise
        events.append("taken")
        return result

    monkeypatch.setattr(walk_fit, "pooled_walk", walk_logged)
    monkeypatch.setattr(walk_pool, "check", check_logged)
    monkeypatch.setattr(walk_fit, "_check_first", lambda opened: bool(opened))
    found = fit_steady(leaky_counter(), 2)
    assert not isinstance(found, str), found
    assert found[0].to_bytes() == walked[0].to_bytes()
    assert found[1] == walked[1]
    # the sets' walk of the round before left a string open; the next round was only checked
    assert events[-3:] == ["open", "closed", "taken"]
    assert "refused" in events  # the rounds before it were checked first too, and refused
