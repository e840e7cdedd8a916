"""The walked certificate (core.walk): every digit string from each copying set is
followed until it lies in its key's set, every digit read on the way must win; a set that is
too small or a readout that loses is refused, and the walk's depth survives the file."""

from dataclasses import replace

import numpy as np
import pytest

from core import copying, decide, zonotope
from core.cells import RnnCell
from core.certify import DEFAULT_TANH_ERROR
from core.copying import CertificateError, Invariant
from core.walk import walk, zonotope_coordinates
from core.weights import RnnWeights
from tests.training.hand_counter import leaky_counter
from training.sets_fit import fit


@pytest.fixture(scope="module")
def walked() -> tuple[RnnWeights, Invariant]:
    """The leaky counter's one-step certificate, checked as a walk of up to three digits."""
    weights = leaky_counter()
    found = fit(weights, 2, 1)
    assert not isinstance(found, str), found
    return weights, replace(found[0], steps=3)


def test_a_walk_checks_what_one_step_proves(walked: tuple[RnnWeights, Invariant]) -> None:
    weights, invariant = walked
    checked = decide.check(weights, invariant, DEFAULT_TANH_ERROR)
    assert checked.proved == 2
    assert checked.margin > 0


def test_a_walks_depth_survives_its_file(walked: tuple[RnnWeights, Invariant]) -> None:
    weights, invariant = walked
    read = Invariant.from_bytes(invariant.to_bytes())
    assert read.steps == 3
    assert decide.check(weights, read, DEFAULT_TANH_ERROR).proved == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("steps", 0),
        ("steps", copying.MAX_STEPS + 1),
        ("entry_steps", -1),
        ("entry_steps", copying.MAX_STEPS + 1),
    ],
)
def test_a_walk_depth_out_of_range_is_refused(
    walked: tuple[RnnWeights, Invariant], field: str, value: int
) -> None:
    _, invariant = walked
    changed = (
        replace(invariant, steps=value)
        if field == "steps"
        else replace(invariant, entry_steps=value)
    )
    with pytest.raises(CertificateError, match=f"out of range: {field} {value}"):
        Invariant.from_bytes(changed.to_bytes())


def test_a_walk_refuses_sets_too_small_to_hold_their_images(
    walked: tuple[RnnWeights, Invariant],
) -> None:
    weights, invariant = walked
    shrunk = replace(invariant, shapes=invariant.shapes * 1e-3)
    with pytest.raises(CertificateError):
        decide.check(weights, shrunk, DEFAULT_TANH_ERROR)
    tree = walk(RnnCell(weights, DEFAULT_TANH_ERROR), copying.sets_of(shrunk), 3)
    assert tree.failure is not None
    assert "still leave their sets" in tree.failure


def test_a_walk_refuses_a_digit_that_loses_on_the_way(
    walked: tuple[RnnWeights, Invariant],
) -> None:
    """Digit 3's logit lowered far below its rivals: a node that reads 3 must fail."""
    weights, invariant = walked
    b_out = weights.b_out.copy()
    b_out[3] -= 1e3
    sets = copying.sets_of(invariant)
    tree = walk(RnnCell(replace(weights, b_out=b_out), DEFAULT_TANH_ERROR), sets, 3)
    assert tree.failure is not None
    assert "digit 3 is not sure to win" in tree.failure
    assert np.isfinite(tree.slack)


def test_the_searchs_walk_stops_at_a_digit_that_loses(
    walked: tuple[RnnWeights, Invariant],
) -> None:
    """keep_going walks past leaves that stay open (where the sets must grow), but a readout
    failure ends the fit, so the walk stops there and says so (the tree does not depend on
    the output bias: the healthy walk's node count is the whole tree's)."""
    weights, invariant = walked
    sets = copying.sets_of(replace(invariant, shapes=invariant.shapes * 1e-3))
    whole = walk(RnnCell(weights, DEFAULT_TANH_ERROR), sets, 3, keep_going=True)
    b_out = weights.b_out.copy()
    b_out[3] -= 1e3
    losing = RnnCell(replace(weights, b_out=b_out), DEFAULT_TANH_ERROR)
    tree = walk(losing, sets, 3, keep_going=True)
    assert whole.failure is not None
    assert "still leave their sets" in whole.failure
    assert tree.failure is not None
    assert "digit 3 is not sure to win" in tree.failure
    assert tree.nodes < whole.nodes


def test_walked_entries_check_what_entries_in_their_sets_prove(
    walked: tuple[RnnWeights, Invariant],
) -> None:
    """entry_steps: the states that absorb the carry are walked into the sets instead of their
    next states lying in them; where those do, the walk closes after one digit."""
    weights, invariant = walked
    entering = replace(invariant, entry_steps=2)
    checked = decide.check(weights, entering, DEFAULT_TANH_ERROR)
    assert checked.proved == 2
    assert checked.margin > 0
    read = Invariant.from_bytes(entering.to_bytes())
    assert read.entry_steps == 2
    assert decide.check(weights, read, DEFAULT_TANH_ERROR).proved == 2
    assert Invariant.from_bytes(invariant.to_bytes()).entry_steps == 0


def test_walked_entries_refuse_sets_too_small_to_hold_them(
    walked: tuple[RnnWeights, Invariant],
) -> None:
    """Each absorbed state is a root of its own, named in the failure: with the sets shrunk,
    the strings from the state after 0 nines and 0 stay outside."""
    weights, invariant = walked
    cell = RnnCell(weights, DEFAULT_TANH_ERROR)
    sets = copying.sets_of(replace(invariant, shapes=invariant.shapes * 1e-3))
    absorbed, margin = decide.absorbed_roots(cell, invariant.proved, sets.keys)
    assert len(absorbed.at) == 9 * (invariant.proved + 1)
    assert margin > 0
    tree = walk(cell, sets, 2, roots=absorbed)
    assert tree.failure is not None
    assert tree.failure.startswith("from the state after 0 nines and 0, ")
    assert tree.failure.endswith("digit strings of 2 still leave their sets")
    shrunk = replace(invariant, shapes=invariant.shapes * 1e-3, entry_steps=2)
    with pytest.raises(CertificateError):
        decide.check(weights, shrunk, DEFAULT_TANH_ERROR)


def test_the_check_walks_the_entries_to_their_depth(walked: tuple[RnnWeights, Invariant]) -> None:
    """Sets shrunk by a tenth hold neither the first copying states nor all their own images:
    with walked entries allowed one digit, the check fails at the entries' walk first and
    names the absorbed state it starts from (not a set, nor the first copying state's box)."""
    weights, invariant = walked
    shrunk = replace(invariant, shapes=invariant.shapes * 0.9, entry_steps=1)
    with pytest.raises(CertificateError, match=r"^from the state after 0 nines and 0, .* of 1 "):
        decide.check(weights, shrunk, DEFAULT_TANH_ERROR)


def test_a_walk_stops_past_its_budget(walked: tuple[RnnWeights, Invariant]) -> None:
    """A search's budget: past `most` nodes the walk fails and says so; within it, the walk
    is the one without a budget."""
    weights, invariant = walked
    cell = RnnCell(weights, DEFAULT_TANH_ERROR)
    sets = copying.sets_of(invariant)
    whole = walk(cell, sets, invariant.steps)
    assert whole.failure is None
    within = walk(cell, sets, invariant.steps, most=whole.nodes)
    assert (within.failure, within.nodes, within.slack) == (None, whole.nodes, whole.slack)
    cut = walk(cell, sets, invariant.steps, most=whole.nodes - 1)
    assert cut.failure == f"the walk passes {whole.nodes - 1} nodes"


def test_a_walk_holds_the_largest_coordinates_of_the_leaves_that_close(
    walked: tuple[RnnWeights, Invariant],
) -> None:
    """Walk.held, what a trim must keep (training.shorten): per set, the largest of each
    coordinate over the children that closed in it, as the one-zonotope bounds measure them
    (up to the walk's few more roundings); zeros where none closed."""
    weights, invariant = walked
    cell = RnnCell(weights, DEFAULT_TANH_ERROR)
    sets = copying.sets_of(invariant)
    held = walk(cell, sets, 1, keep_going=True, hold=True).held
    count = len(sets.keys)
    digits = np.tile(np.arange(10), count)
    centres, generators = zonotope.image(
        weights,
        np.repeat(sets.centres, 10, axis=0),
        np.repeat(sets.shapes, 10, axis=0),
        digits,
        DEFAULT_TANH_ERROR,
    )
    targets = sets.after.reshape(-1)
    inside = zonotope_coordinates(sets, targets, centres, generators)
    closed = inside.max(axis=1) <= sets.limit[targets]
    assert closed.any()
    expected = np.zeros_like(held)
    np.maximum.at(expected, targets[closed], inside[closed])
    np.testing.assert_allclose(held, expected, rtol=1e-9, atol=0)
    assert not walk(cell, sets, 1, keep_going=True).held.any()  # not asked
    shrunk = copying.sets_of(replace(invariant, shapes=invariant.shapes * 0.8))
    none = walk(cell, shrunk, 1, keep_going=True, hold=True)
    assert len(none.open_targets) == 10 * count
    assert not none.held.any()


def test_a_walk_traces_every_child_it_measures(walked: tuple[RnnWeights, Invariant]) -> None:
    """Walk.trace, what the polish weighs (training.shorten): one entry per child measured,
    the set it was measured in and how far out; every child open above the deepest level has
    its ten children measured, and nothing else is."""
    weights, invariant = walked
    cell = RnnCell(weights, DEFAULT_TANH_ERROR)
    # every other set shrunk: the children measured in it stay open, the others close
    scale = np.where(np.arange(len(invariant.centres)) % 2 == 0, 0.8, 1.0)[:, None, None]
    sets = copying.sets_of(replace(invariant, shapes=invariant.shapes * scale))
    traced = walk(cell, sets, 3, keep_going=True, trace=True)
    trace = traced.trace
    assert trace is not None
    assert len(trace.target) == len(trace.ratio) == len(trace.start) == traced.nodes
    count = len(sets.keys)
    first = slice(0, 10 * count)  # the first batch: every set read with every digit
    np.testing.assert_array_equal(trace.target[first], sets.after.T.reshape(-1))
    np.testing.assert_array_equal(trace.start[first], np.tile(np.arange(count), 10))
    np.testing.assert_array_equal(trace.closed, trace.ratio <= 1)
    inner = ~trace.closed & ~trace.last
    assert inner.any()
    assert trace.closed.any()
    assert traced.nodes == 10 * (count + int(inner.sum()))
    assert int((~trace.closed & trace.last).sum()) == len(traced.open_targets)
    assert walk(cell, sets, 3, keep_going=True).trace is None  # not asked
