"""The decided carry length: the search proves a hand-made counter exactly up to where it breaks
and finds the input that breaks it; the one-pass check refuses a broken certificate; the
refuting input of the shipped post model really fails through onnxruntime."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import decide
from core.card import CarryFailure, ModelCard
from core.cells import RnnCell
from core.certify import DEFAULT_TANH_ERROR
from core.codec import add_one, carry_run, decode, encode_batch
from core.decide import CertificateError, Invariant
from core.session import open_session
from core.weights import RnnWeights, weights_from_onnx
from tests.training.hand_counter import add_one_by_network, leaky_counter
from training.decide import Decision, decide_carry

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def leaky() -> tuple[RnnWeights, Decision]:
    """The counter that breaks after a long run of nines, decided."""
    weights = leaky_counter()
    decision = decide_carry(
        weights, lambda n: add_one_by_network(weights, [n])[0], key_digits=1, limit=30
    )
    return weights, decision


def test_the_leaky_counter_is_decided_exactly(leaky: tuple[RnnWeights, Decision]) -> None:
    weights, decision = leaky
    assert decision.invariant is not None
    assert decision.refutation is not None
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
    k = decision.invariant.key_digits
    return sorted({decide.key_of([9, d, e], k) for d in range(9) for e in range(10)})


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
    decide.entries(cell, 0, 2)
    failure = _post_failure()
    if failure.next_digit is None or failure.example != "9" * failure.nines:
        pytest.skip("the scan's first failure is not at a carrying or absorbed state")
    with pytest.raises(CertificateError, match="nines"):
        decide.entries(cell, failure.nines, 2)
