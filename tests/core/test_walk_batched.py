"""The walk's batched step (core.zonotope.branch, core.walk._measure) bounds what the
one-zonotope step (zonotope.image, zonotope_coordinates, readout) bounds, never less: the
same children, containment coordinates at least as large, readout slack at most as large, and
every sampled point's real image inside them."""

from pathlib import Path

import numpy as np
import pytest

from core import copying, walk, zonotope
from core.cells import RnnCell
from core.copying import Ints, Invariant, Sets
from core.interval import Array
from core.weights import RnnWeights, weights_from_onnx

MODELS = Path(__file__).resolve().parents[2] / "models"
ERROR = 1e-5
PARENTS = 6
TERMS = 24
Case = tuple[RnnCell, Sets, Array, Array, Ints]


@pytest.fixture(scope="module")
def case() -> Case:
    """counter-post's cell, random one-digit-key sets, and random parent zonotopes (centres,
    generators as rows) with their keys."""
    weights = weights_from_onnx(MODELS / "counter-post.onnx")
    assert isinstance(weights, RnnWeights)
    rng = np.random.default_rng(0)
    size = weights.hidden_size
    centres = rng.uniform(-0.6, 0.6, (10, size))
    shapes = np.eye(size) * 0.3 + rng.normal(0, 0.02, (10, size, size))
    sets = copying.sets_of(Invariant(1, 1, centres, shapes, copying.uniform_keys(1), 3))
    parents = rng.uniform(-0.6, 0.6, (PARENTS, size))
    rows = rng.normal(0, 0.02, (PARENTS, TERMS, size))
    at = rng.integers(0, 10, PARENTS)
    return RnnCell(weights, ERROR), sets, parents, rows, at


def test_branch_builds_the_children_image_builds(case: Case) -> None:
    cell, _, parents, rows, _ = case
    branch = zonotope.branch(cell.weights, parents, rows, ERROR)
    centres, generators = zonotope.image(
        cell.weights, parents[:, None], rows.transpose(0, 2, 1)[:, None], np.arange(10), ERROR
    )  # (n, 10, H), (n, 10, H, g + H)
    digits, which = np.divmod(np.arange(10 * PARENTS), PARENTS)
    built = branch.children(digits, which)  # (10 n, g + H, H)
    old = generators.transpose(1, 0, 3, 2).reshape(10 * PARENTS, TERMS + cell.state_size, -1)
    np.testing.assert_allclose(branch.centres, centres.transpose(1, 0, 2), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(built[:, :TERMS], old[:, :TERMS], rtol=1e-12, atol=1e-15)
    # the fresh generators: one per unit, as large as image's up to the order of its sums
    box_old = np.diagonal(old[:, TERMS:], axis1=1, axis2=2)
    box_new = np.diagonal(built[:, TERMS:], axis1=1, axis2=2)
    assert np.all(box_new >= box_old * (1 - 1e-12))
    assert np.all(branch.size.reshape(-1, cell.state_size) >= np.abs(built).sum(axis=1))


def test_measure_is_at_least_as_cautious_as_the_one_zonotope_bounds(case: Case) -> None:
    cell, sets, parents, rows, at = case
    branch = zonotope.branch(cell.weights, parents, rows, ERROR)
    targets = sets.after[at].T  # (10, n)
    slack, gap, inside = walk._measure(cell, sets, targets, branch)
    centres, generators = zonotope.image(
        cell.weights, parents[:, None], rows.transpose(0, 2, 1)[:, None], np.arange(10), ERROR
    )
    size = cell.state_size
    flat_centres = centres.transpose(1, 0, 2).reshape(-1, size)
    flat_generators = generators.transpose(1, 0, 2, 3).reshape(10 * PARENTS, size, -1)
    old_inside = walk.zonotope_coordinates(sets, targets.reshape(-1), flat_centres, flat_generators)
    read = np.repeat(np.arange(10), PARENTS)
    old_slack, old_gap = copying.readout(cell, flat_centres, flat_generators, read)
    tolerance = 1e-12
    assert np.all(inside.reshape(-1, size) >= old_inside * (1 - tolerance))
    assert np.all(slack.reshape(-1) <= old_slack + tolerance * np.abs(old_slack))
    assert np.all(gap.reshape(-1) <= old_gap + tolerance * np.abs(old_gap))


def test_measure_holds_every_sampled_points_image(case: Case) -> None:
    cell, sets, parents, rows, at = case
    w = cell.weights
    branch = zonotope.branch(w, parents, rows, ERROR)
    targets = sets.after[at].T
    _, gap, inside = walk._measure(cell, sets, targets, branch)
    rng = np.random.default_rng(1)
    u = rng.choice([-1.0, 1.0], (500, TERMS)) * rng.uniform(0.9, 1, (500, TERMS))
    shift = w.w_ih.T + w.b_ih + w.b_hh
    for parent in range(PARENTS):
        points = parents[parent] + u @ rows[parent]
        for digit in range(10):
            moved = np.tanh(points @ w.w_hh.T + shift[digit])
            target = targets[digit, parent]
            measured = np.abs((moved - sets.centres[target]) @ sets.inverses[target].T)
            assert np.all(measured <= inside[digit, parent])
            logits = moved @ w.w_out.T + w.b_out
            lead = logits[:, digit][:, None] - np.delete(logits, digit, axis=1)
            assert np.all(lead.min(axis=1) >= gap[digit, parent])


def test_the_readouts_size_bound_holds_every_sampled_points_image() -> None:
    """Where the walk's readout takes a child's size per unit instead of its generators (most
    children of counter-post's own sets), every sampled point's logit lead stays above it."""
    weights = weights_from_onnx(MODELS / "counter-post.onnx")
    assert isinstance(weights, RnnWeights)
    cell = RnnCell(weights, ERROR)
    invariant = Invariant.from_bytes((MODELS / "counter-post.cert.npz").read_bytes())
    sets = copying.sets_of(invariant)
    starts = np.arange(0, len(sets.keys), 7)
    rows = sets.shapes[starts].transpose(0, 2, 1)
    branch = zonotope.branch(weights, sets.centres[starts], rows, ERROR)
    diffs = weights.w_out[:, None, :] - weights.w_out[None]
    sized = np.einsum("ekj,enj->enk", np.abs(diffs), branch.size)
    by_size = walk._readout_slack(cell, diffs, branch, sized)[0].min(axis=2) > 0
    assert by_size.sum() > by_size.size // 2  # the size bound decides most children
    _, gap, _ = walk._measure(cell, sets, sets.after[starts].T, branch)
    rng = np.random.default_rng(2)
    u = rng.choice([-1.0, 1.0], (400, rows.shape[1])) * rng.uniform(0.95, 1, (400, rows.shape[1]))
    shift = weights.w_ih.T + weights.b_ih + weights.b_hh
    for parent, start in enumerate(starts):
        points = sets.centres[start] + u @ rows[parent]
        for digit in range(10):
            moved = np.tanh(points @ weights.w_hh.T + shift[digit])
            logits = moved @ weights.w_out.T + weights.b_out
            lead = logits[:, digit][:, None] - np.delete(logits, digit, axis=1)
            assert np.all(lead.min(axis=1) >= gap[digit, parent])
