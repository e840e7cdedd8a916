"""A number with no trailing nine that the model answers wrong decides K = -1 at once: the
copying search finds one where the model slips, confirms it on the served answer, and claims
nothing where the model copies right."""

from core.codec import add_one, carry_run
from tests.training.hand_counter import (
    add_one_by_network,
    answer_of,
    copy_slip_counter,
    hand_counter,
)
from training.copy_search import copying_failure
from training.decide import decide_carry


def test_the_search_finds_a_copying_slip_the_model_really_makes() -> None:
    slip = copy_slip_counter()
    # the fixture's slip, past what the decision's own tries reach (3 digits before the run)
    assert add_one_by_network(slip, ["4333", "433", "43", "4339"]) == ["7334", "434", "44", "4340"]
    found = copying_failure(slip, answer_of(slip), depth=10)
    assert found is not None
    number, got = found
    assert carry_run(number) == 0
    assert not number.startswith("0")
    assert "4333" in number  # only three 3s then a 4 (read from the right) slip
    assert got == add_one_by_network(slip, [number])[0] != add_one(number)


def test_no_failure_is_claimed_where_the_model_copies_right() -> None:
    exact = hand_counter()
    assert copying_failure(exact, answer_of(exact), depth=10) is None
    # a float64 candidate the served answer contradicts is not a refutation
    slip = copy_slip_counter()
    assert copying_failure(slip, add_one, depth=10) is None


def test_a_copying_slip_decides_k_minus_one_with_its_input() -> None:
    slip = copy_slip_counter()
    decision = decide_carry(slip, answer_of(slip))
    assert decision.proved == -1
    assert decision.invariant is None
    assert decision.refutation is not None
    assert carry_run(decision.refutation) == 0
    assert decision.refuted_answer != add_one(decision.refutation)
