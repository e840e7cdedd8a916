"""The decided carry length: the search proves a hand-made counter exactly up to where it breaks
and finds the input that breaks it; the one-pass check refuses a broken certificate; the
refuting input of the shipped post model really fails through onnxruntime."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import copying, decide
from core.card import CarryFailure, ModelCard
from core.cells import RnnCell
from core.certify import DEFAULT_TANH_ERROR
from core.codec import add_one, carry_run, decode, encode_batch
from core.copying import CertificateError, Invariant
from core.session import open_session
from core.weights import RnnWeights, weights_from_onnx
from tests.training.hand_counter import add_one_by_network, answer_of, leaky_counter
from training.decide import Decision, decide_carry
from training.sets_fit import deepen, fit

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def leaky() -> tuple[RnnWeights, Decision]:
    """The counter that breaks after a long run of nines, decided."""
    weights = leaky_counter()
    decision = decide_carry(weights, answer_of(weights), key_digits=1, limit=30)
    return weights, decision


def test_the_leaky_counter_is_decided_exactly(leaky: tuple[RnnWeights, Decision]) -> None:
    weights, decision = leaky
    assert decision.invariant is not None
    assert decision.refutation is not None
    assert decision.proved != "unbounded"
    assert decision.proved >= 1
    # the refuting input has one nine more than proved, and the network gets it wrong
    assert carry_run(decision.refutation) == decision.proved + 1
    assert add_one_by_network(weights, [decision.refutation]) != [add_one(decision.refutation)]
    # within the proved run, long inputs with any digits are right
    rng = np.random.default_rng(0)
    numbers = [
        "".join(map(str, rng.integers(0, 10, 60))) + str(d) + "9" * k
        for k in range(decision.proved + 1)
        for d in range(9)
    ]
    assert add_one_by_network(weights, numbers) == [add_one(n) for n in numbers]
    checked = decide.check(weights, decision.invariant, DEFAULT_TANH_ERROR)
    assert checked.proved == decision.proved
    assert checked.margin > 0


def test_a_certificate_survives_its_file(leaky: tuple[RnnWeights, Decision]) -> None:
    weights, decision = leaky
    assert decision.invariant is not None
    again = Invariant.from_bytes(decision.invariant.to_bytes())
    assert decide.check(weights, again, DEFAULT_TANH_ERROR).proved == decision.proved


def test_a_malformed_file_is_refused() -> None:
    with pytest.raises(CertificateError, match="not a certificate"):
        Invariant.from_bytes(b"not an npz")


def _reached_keys(decision: Decision) -> list[int]:
    """Keys whose set holds real states: the first copying states' keys and what follows."""
    assert decision.invariant is not None
    tails = np.asarray([900 + 10 * d + e for d in range(9) for e in range(10)])
    return sorted(set(copying.key_index(decision.invariant.codes(), tails).tolist()))


@settings(max_examples=8, deadline=None)
@given(pick=st.integers(0, 10**6))
def test_a_shrunk_set_is_refused(leaky: tuple[RnnWeights, Decision], pick: int) -> None:
    """Halving any set that holds real states leaves those states out: the check must fail."""
    weights, decision = leaky
    assert decision.invariant is not None
    keys = _reached_keys(decision)
    key = keys[pick % len(keys)]
    shapes = decision.invariant.shapes.copy()
    shapes[key] *= 0.5
    with pytest.raises(CertificateError):
        decide.check(weights, replace(decision.invariant, shapes=shapes), DEFAULT_TANH_ERROR)


def test_sets_under_the_wrong_keys_are_refused(leaky: tuple[RnnWeights, Decision]) -> None:
    weights, decision = leaky
    assert decision.invariant is not None
    order = np.roll(np.arange(len(decision.invariant.centres)), 1)  # each set one key over
    moved = replace(
        decision.invariant,
        centres=decision.invariant.centres[order],
        shapes=decision.invariant.shapes[order],
    )
    with pytest.raises(CertificateError):
        decide.check(weights, moved, DEFAULT_TANH_ERROR)


def test_a_claim_past_the_break_is_refused(leaky: tuple[RnnWeights, Decision]) -> None:
    weights, decision = leaky
    assert decision.invariant is not None
    assert decision.proved != "unbounded"
    more = replace(decision.invariant, proved=decision.proved + 1)
    with pytest.raises(CertificateError, match=f"after {decision.proved + 1} nines"):
        decide.check(weights, more, DEFAULT_TANH_ERROR)


def test_tampered_weights_are_refused(leaky: tuple[RnnWeights, Decision]) -> None:
    """The certificate is about the weights it was made for: swap two output digits' rows."""
    weights, decision = leaky
    assert decision.invariant is not None
    w_out = weights.w_out.copy()
    w_out[[3, 4]] = w_out[[4, 3]]
    with pytest.raises(CertificateError):
        decide.check(replace(weights, w_out=w_out), decision.invariant, DEFAULT_TANH_ERROR)


def _post_failure() -> CarryFailure:
    card = ModelCard.model_validate_json((MODELS / "counter-post.json").read_text())
    failure = card.metrics.carry_scan.first_failure
    assert failure is not None, "counter-post is expected to fail somewhere in its scan"
    return failure


def test_the_post_models_refutation_fails_through_onnxruntime() -> None:
    """counter-post's scan finds an input wrong; the refutation check sees it on the served
    graph, and sees the same input with one nine fewer (a run the scan found right) as right."""
    session = open_session((MODELS / "counter-post.onnx").read_bytes())

    def answer(number: str) -> str:
        (probs,) = session.run(None, {"digits": encode_batch([number])})
        return decode(np.asarray(probs).argmax(axis=-1)[0])

    failure = _post_failure()
    assert decide.refutation(answer, failure.example) == failure.got
    shorter = failure.example[: -failure.nines] + "9" * (failure.nines - 1)
    assert decide.refutation(answer, shorter) is None


def test_the_post_models_carrying_states_fail_where_its_scan_does() -> None:
    """The tight carrying and absorbed states of counter-post read right without a carry, and
    the check refuses the run its scan found wrong."""
    cell = RnnCell(weights_from_onnx(MODELS / "counter-post.onnx"), DEFAULT_TANH_ERROR)
    decide.entries(cell, 0)
    failure = _post_failure()
    if failure.next_digit is None or failure.example != "9" * failure.nines:
        pytest.skip("the scan's first failure is not at a carrying or absorbed state")
    with pytest.raises(CertificateError, match="nines"):
        decide.entries(cell, failure.nines)


def test_the_post_models_carrying_states_are_proved_up_to_its_scans_exact_run() -> None:
    """Every carrying and absorbed state of counter-post, up to the longest run its scan
    found exact, reads right as proved (zonotopes around the chain; boxes wrapped past it),
    and the run after it does not: the carrying phase is decided exactly."""
    card = ModelCard.model_validate_json((MODELS / "counter-post.json").read_text())
    exact = card.metrics.carry_scan.longest_exact_run
    cell = RnnCell(weights_from_onnx(MODELS / "counter-post.onnx"), DEFAULT_TANH_ERROR)
    lo, hi, tails, margin = decide.entries(cell, exact)
    assert margin > 0
    assert len(lo) == len(tails) == 90 * (exact + 1)
    assert np.all(lo <= hi)
    with pytest.raises(CertificateError, match=f"after {exact + 1} nines"):
        decide.entries(cell, exact + 1)


def test_the_first_copying_states_hold_the_real_trajectories() -> None:
    """The boxes entries returns hold the float64 trajectory of every (run, absorbing digit,
    next digit): the enclosure is around the states the network reaches, not beside them."""
    weights = weights_from_onnx(MODELS / "counter-post.onnx")
    assert isinstance(weights, RnnWeights)
    cell = RnnCell(weights, DEFAULT_TANH_ERROR)
    lo, hi, _, _ = decide.entries(cell, 6)
    shift = weights.w_ih.T + weights.b_ih + weights.b_hh
    state = np.zeros(weights.hidden_size)
    row = 0
    for _ in range(7):
        for d in range(9):
            absorbed = np.tanh(weights.w_hh @ state + shift[d])
            for e in range(10):
                copy = np.tanh(weights.w_hh @ absorbed + shift[e])
                assert np.all(lo[row] <= copy), (d, e)
                assert np.all(copy <= hi[row]), (d, e)
                row += 1
        state = np.tanh(weights.w_hh @ state + shift[9])


def _codes(*keys: str) -> copying.Ints:
    return np.asarray([copying.code(key) for key in keys], dtype=np.int64)


@pytest.fixture(scope="module")
def mixed() -> tuple[RnnWeights, Invariant]:
    """The leaky counter's certificate with keys of one to three digits: 7 split by the digit
    before it, then 37 by the one before that (which splits 3 too, so that 3 read with 7
    leads to a key at most one digit deeper)."""
    weights = leaky_counter()
    keys = deepen(deepen(copying.uniform_keys(1), _codes("7")), _codes("37"))
    found = fit(weights, 3, 1, keys=keys)
    assert not isinstance(found, str), found
    return weights, found[0]


def test_keys_of_mixed_depth_are_checked(mixed: tuple[RnnWeights, Invariant]) -> None:
    weights, invariant = mixed
    depths = copying.depths(invariant.codes())
    assert set(depths.tolist()) == {1, 2, 3}
    assert copying.code("037") in invariant.codes()
    assert copying.code("7") not in invariant.codes()
    again = Invariant.from_bytes(invariant.to_bytes())
    assert decide.check(weights, again, DEFAULT_TANH_ERROR).proved == 3


def test_the_key_after_a_digit_is_the_suffix_key(mixed: tuple[RnnWeights, Invariant]) -> None:
    keys = mixed[1].codes()
    after = copying.successors(keys)

    def then(key: str, digit: int) -> str:
        return str(keys[after[int(np.searchsorted(keys, copying.code(key))), digit]])[1:]

    assert then("13", 7) == "137"
    assert then("9", 7) == "97"
    assert then("137", 0) == "0"
    assert then("137", 3) == "73"


@settings(max_examples=6, deadline=None)
@given(pick=st.integers(0, 10**6))
def test_a_shrunk_deep_set_is_refused(mixed: tuple[RnnWeights, Invariant], pick: int) -> None:
    """Every digit string is read in the copying phase, so every three-digit key holds real
    states: halving its set must leave some out."""
    weights, invariant = mixed
    deep = np.flatnonzero(copying.depths(invariant.codes()) == 3)
    key = int(deep[pick % len(deep)])
    shapes = invariant.shapes.copy()
    shapes[key] *= 0.5
    with pytest.raises(CertificateError):
        decide.check(weights, replace(invariant, shapes=shapes), DEFAULT_TANH_ERROR)


def test_deep_sets_under_swapped_keys_are_refused(mixed: tuple[RnnWeights, Invariant]) -> None:
    """The sets of 037 (states that read out 7) and 03 (read out 3) trade keys."""
    weights, invariant = mixed
    keys = invariant.codes()
    one, other = np.searchsorted(keys, _codes("037", "03"))
    order = np.arange(len(keys))
    order[[one, other]] = order[[other, one]]
    swapped = replace(invariant, centres=invariant.centres[order], shapes=invariant.shapes[order])
    with pytest.raises(CertificateError):
        decide.check(weights, swapped, DEFAULT_TANH_ERROR)


def _without(invariant: Invariant, drop: str, add: str | None = None) -> Invariant:
    """The certificate with one key (and its set) dropped, or replaced by another key."""
    keys = invariant.codes()
    at = int(np.searchsorted(keys, copying.code(drop)))
    keep = np.arange(len(keys)) != at
    codes, centres, shapes = keys[keep], invariant.centres[keep], invariant.shapes[keep]
    if add is not None:
        codes = np.append(codes, copying.code(add))
        centres = np.concatenate([centres, invariant.centres[at : at + 1]])
        shapes = np.concatenate([shapes, invariant.shapes[at : at + 1]])
        order = np.argsort(codes)
        codes, centres, shapes = codes[order], centres[order], shapes[order]
    return replace(invariant, keys=codes, centres=centres, shapes=shapes)


def test_an_incomplete_key_set_is_refused(mixed: tuple[RnnWeights, Invariant]) -> None:
    """Without 937, a history ending in 937 has no key: no set covers its states."""
    weights, invariant = mixed
    with pytest.raises(CertificateError, match="incomplete"):
        decide.check(weights, _without(invariant, "937"), DEFAULT_TANH_ERROR)


def test_a_key_that_is_a_suffix_of_another_is_refused(mixed: tuple[RnnWeights, Invariant]) -> None:
    """With 3 in place of 03, a history ending in 13 would have two keys (13 and 3); and a
    code whose Kraft sum is 1 (6 beside 16, 97 left out) is no suffix code either."""
    weights, invariant = mixed
    with pytest.raises(CertificateError, match="as a suffix"):
        decide.check(weights, _without(invariant, "03", "3"), DEFAULT_TANH_ERROR)
    codes = [*"01234568", "9", *(f"{a}7" for a in range(9)), "16"]
    with pytest.raises(CertificateError, match="as a suffix"):
        copying.suffix_code(np.sort(_codes(*codes)))


def test_a_successor_more_than_one_digit_deeper_is_refused() -> None:
    """Keys 0-9 but 7, the ten 7s split by the digit before, and 37 split again: complete and
    suffix-free, but 3 read with 7 leads to x37, whose x 3 alone cannot tell."""
    keys = deepen(copying.uniform_keys(1), _codes("7"))
    codes = sorted(
        {str(code)[1:] for code in keys} - {"37"} | {f"{a}37" for a in range(10)},
        key=copying.code,
    )
    split = _codes(*codes)
    assert len(copying.suffix_code(split)) == len(split)  # a complete suffix code
    with pytest.raises(CertificateError, match="more than one digit deeper"):
        copying.successors(split)
