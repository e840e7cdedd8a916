"""The walked fit (training.walk_fit.fit_walk): where its first sets read a digit unsure within
SHALLOW digits, it says so from a walk that deep, without walking their whole trees."""

from typing import Any

import pytest

from core import walk
from core.walk import Walk
from tests.training.hand_counter import leaky_counter
from training import walk_fit, walk_pool
from training.walk_fit import SHALLOW, WALK_STEPS, fit_walk


def walks_of(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, Walk, bytes]]:
    """Every walk the fit makes, its checks' included, as it is made: its depth, the walk and
    the walked sets' shapes."""
    made: list[tuple[int, Walk, bytes]] = []
    real = walk_pool.pooled_walk

    def recorded(cell: Any, sets: Any, longest: int, **options: Any) -> Walk:
        walked = real(cell, sets, longest, **options)
        made.append((longest, walked, sets.shapes.tobytes()))
        return walked

    monkeypatch.setattr(walk_fit, "pooled_walk", recorded)
    monkeypatch.setattr(walk_pool, "pooled_walk", recorded)  # walk_pool.check's
    return made


def test_a_digit_read_unsure_early_ends_the_fit_at_the_shallow_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the walk's readout asks this much more of every lead: its first digit is then unsure
    monkeypatch.setattr(walk, "SOFTMAX_SLACK", 1e3)
    made = walks_of(monkeypatch)
    found = fit_walk(leaky_counter(), 2)
    assert isinstance(found, str)
    assert "after 1 digits" in found
    assert "not sure to win" in found
    assert [depth for depth, *_ in made] == [SHALLOW]


def test_sets_that_read_right_early_are_walked_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    made = walks_of(monkeypatch)
    fit_walk(leaky_counter(), 2)
    assert [depth for depth, *_ in made][:2] == [SHALLOW, WALK_STEPS]
    assert all(walked.slack > 0 for _, walked, _ in made)
    assert all(depth == WALK_STEPS for depth, *_ in made[1:])


@pytest.mark.parametrize(
    ("opened", "checked_first"),
    [
        ([452, 21], True),
        ([8491, 452, 21], True),
        ([21], False),
        ([1, 1], False),
        ([2000, 150], True),
        ([2000, 301], False),
        ([2000, 250], False),
    ],
)
def test_a_round_is_checked_first_when_the_last_growth_closed_nine_in_ten(
    opened: list[int], checked_first: bool
) -> None:
    assert walk_fit._check_first(opened) is checked_first


def test_a_round_the_check_refuses_is_walked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A round checked first and refused takes the check's walk of its sets (walked on past
    the leaves that stay open) as its own: every round walks its sets once, the first SHALLOW
    digits deep too."""
    made = walks_of(monkeypatch)
    monkeypatch.setattr(walk_fit, "_check_first", lambda opened: bool(opened))
    found = fit_walk(leaky_counter(), 2)
    assert isinstance(found, str)
    assert "1 digit strings of 6 still leave their sets" in found
    assert [depth for depth, *_ in made] == [SHALLOW] + [WALK_STEPS] * walk_fit.WALK_ROUNDS
    assert len({(depth, shapes) for depth, _, shapes in made}) == len(made)
