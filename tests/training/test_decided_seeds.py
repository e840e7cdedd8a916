"""The decided-seeds page states the goal (at least 9 seeds in 10 decided, each within a
minute of search) and whether the run met it, from the seeds' decisions."""

from core.card import Decision, Refutation
from training.decided_seeds import goal


def _decision(proved: int | str, refuted_at: int | None, seconds: float) -> Decision:
    refutation = (
        None
        if refuted_at is None
        else Refutation(nines=refuted_at, example="9" * refuted_at, expected="1", got="0")
    )
    return Decision.model_validate(
        {
            "method": "walked",
            "proved_carry_length": proved,
            "refutation": refutation,
            "certificate_file": None,
            "certificate_sha256": None,
            "key_digits": 2,
            "tanh_error_bound": 1e-5,
            "margin": None,
            "search_seconds": seconds,
            "reason": "test",
        }
    )


def test_nine_exact_or_unbounded_decisions_within_a_minute_meet_the_goal() -> None:
    decisions: list[Decision | None] = [_decision(4, 5, 10.0)] * 8
    decisions += [_decision("unbounded", None, 59.0), None]
    assert goal(decisions) == (
        "Goal: at least 9/10 decided, each within 60 s of search: 9/10, met."
    )


def test_a_range_a_slow_decision_or_a_stopped_search_does_not_count() -> None:
    exact = [_decision(4, 5, 10.0)] * 7
    between = _decision(-1, 5, 10.0)  # proved -1, refuted at 5: K lies between
    slow = _decision(17, 18, 61.0)
    assert goal([*exact, between, slow, None]) == (
        "Goal: at least 9/10 decided, each within 60 s of search: 7/10, not met."
    )
