"""The carrying set (core.carrying): a counter whose carry lasts for ever is decided for every run
of nines, and the one-pass check refuses a carrying set that is not invariant, one the chain does
not enter, and one put on a counter whose carry fades."""

from dataclasses import replace

import numpy as np
import pytest

from core import decide
from core.certify import DEFAULT_TANH_ERROR
from core.codec import add_one
from core.copying import CertificateError, Invariant
from core.weights import RnnWeights
from tests.training.hand_counter import add_one_by_network, answer_of, hand_counter, leaky_counter
from training.decide import Decision, decide_carry


@pytest.fixture(scope="module")
def lasting() -> tuple[RnnWeights, Decision]:
    """The exact hand-made counter (its carry is a saturated attractor), decided."""
    weights = hand_counter()
    decision = decide_carry(weights, answer_of(weights), key_digits=1, limit=30)
    return weights, decision


def _certificate(decision: Decision) -> Invariant:
    assert decision.invariant is not None
    return decision.invariant


def test_a_lasting_carry_is_proved_for_every_run(lasting: tuple[RnnWeights, Decision]) -> None:
    weights, decision = lasting
    assert decision.proved == "unbounded"
    assert decision.refutation is None
    # the file shipped beside the card keeps the carrying set, and the check re-derives it
    shipped = Invariant.from_bytes(_certificate(decision).to_bytes())
    assert shipped.carrying_centre is not None
    assert decide.check(weights, shipped, DEFAULT_TANH_ERROR).proved == "unbounded"
    # runs far past the search's limit (30) are right, as the proof says
    numbers = ["9" * 500, "4" + "9" * 300, "12" + "9" * 77 + "0"]
    assert add_one_by_network(weights, numbers) == [add_one(n) for n in numbers]


def test_without_its_carrying_set_the_certificate_is_finite(
    lasting: tuple[RnnWeights, Decision],
) -> None:
    weights, decision = lasting
    finite = replace(_certificate(decision), carrying_centre=None, carrying_shape=None)
    assert decide.check(weights, finite, DEFAULT_TANH_ERROR).proved == finite.proved


def test_a_shrunk_carrying_set_is_refused(lasting: tuple[RnnWeights, Decision]) -> None:
    weights, decision = lasting
    certificate = _certificate(decision)
    assert certificate.carrying_shape is not None
    shrunk = replace(certificate, carrying_shape=certificate.carrying_shape * 1e-3)
    with pytest.raises(CertificateError, match="read with a 9 leaves itself"):
        decide.check(weights, shrunk, DEFAULT_TANH_ERROR)


def test_a_carrying_set_the_chain_has_not_entered_is_refused(
    lasting: tuple[RnnWeights, Decision],
) -> None:
    weights, decision = lasting
    early = replace(_certificate(decision), proved=0)  # the zero state: not near the attractor
    with pytest.raises(CertificateError, match="after 0 nines are not inside the carrying set"):
        decide.check(weights, early, DEFAULT_TANH_ERROR)


def test_a_carrying_set_on_a_fading_carry_is_refused() -> None:
    """The leaky counter loses its carry after a long run: a set around where its chain of
    nines settles, wide enough to hold the chain, must not prove every run."""
    weights = leaky_counter()
    decision = decide_carry(weights, answer_of(weights), key_digits=1, limit=30)
    certificate = _certificate(decision)
    shift = weights.w_ih.T[9] + weights.b_ih + weights.b_hh
    state = np.zeros(weights.hidden_size)
    for _ in range(certificate.proved):
        state = np.tanh(weights.w_hh @ state + shift)
    claimed = replace(
        certificate, carrying_centre=state, carrying_shape=np.eye(weights.hidden_size) * 0.5
    )
    with pytest.raises(CertificateError, match="carrying set"):
        decide.check(weights, claimed, DEFAULT_TANH_ERROR)
