"""The search's walks on every core (training.walk_pool): a walk dealt out to worker processes
comes back as the one walk from every start, bit for bit, whether it closes, leaves strings
open, reads a digit unsure or runs past its budget; the certificate it checks is the one the
service's single-core check accepts."""

import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from core import copying, decide
from core.card import ModelCard
from core.cells import RnnCell
from core.certify import DEFAULT_TANH_ERROR
from core.copying import CertificateError, Invariant
from core.decide import Checked
from core.walk import BATCH, CUT, OUT_OF_TIME, Frontier, Roots, Walk, walk
from core.weights import RnnWeights, weights_from_onnx
from tests.training.hand_counter import leaky_counter
from training import shorten, walk_pool
from training.walk_fit import fit_steady

MODELS = Path(__file__).resolve().parents[2] / "models"
COPIES = 3  # each set walked as this many roots: more than two chunks, so both workers walk


@pytest.fixture(scope="module")
def shipped() -> tuple[RnnWeights, Invariant, float]:
    """counter-post's weights, its walked certificate and the tanh error it allows."""
    card = ModelCard.model_validate_json((MODELS / "counter-post.json").read_text())
    decision = card.metrics.decision
    assert decision is not None
    assert decision.certificate_file is not None
    invariant = Invariant.from_bytes((MODELS / decision.certificate_file).read_bytes())
    weights = weights_from_onnx(MODELS / "counter-post.onnx")
    assert isinstance(weights, RnnWeights)
    return weights, invariant, decision.tanh_error_bound


def _roots(sets: copying.Sets) -> Roots:
    """Every set as a root, COPIES times over: a walk of 300 starts."""
    every = np.tile(np.arange(len(sets.keys)), COPIES)
    rows = np.ascontiguousarray(sets.shapes[every].transpose(0, 2, 1))
    names = tuple(f"root {i}" for i in range(len(every)))
    return Roots(sets.centres[every], rows, every, names)


def _same(plain: Walk, pooled: Walk) -> None:
    assert (pooled.nodes, pooled.failure) == (plain.nodes, plain.failure)
    assert (pooled.slack, pooled.margin, pooled.worst) == (plain.slack, plain.margin, plain.worst)
    assert np.array_equal(pooled.held, plain.held)
    assert np.array_equal(pooled.open_targets, plain.open_targets)
    assert np.array_equal(pooled.open_coordinates, plain.open_coordinates)
    if plain.trace is None:
        assert pooled.trace is None
        return
    assert pooled.trace is not None
    for field in ("target", "ratio", "closed", "start", "last"):
        assert np.array_equal(getattr(pooled.trace, field), getattr(plain.trace, field)), field


@pytest.mark.parametrize(
    ("scale", "options"),
    [
        (1.0, {"hold": True, "trace": True}),  # every string closes
        (0.8, {}),  # strings stay open: the first one found ends the walk
        (0.8, {"keep_going": True}),  # every open string, as a fit grows its sets by them
        (1.0, {"most": 40_000}),  # the budget runs out
        (1.6, {"keep_going": True}),  # sets too wide: a digit read is not sure to win
        (0.8, {"keep_going": True, "until": time.monotonic() + 3600}),  # a deadline not reached
    ],
)
@pytest.mark.parametrize("rooted", [True, False], ids=["300 roots", "100 sets"])
def test_a_pooled_walk_is_the_walk_from_every_start(
    shipped: tuple[RnnWeights, Invariant, float],
    scale: float,
    options: dict[str, object],
    rooted: bool,
) -> None:
    """300 roots are dealt out in chunks of starts; 100 sets, one batch, are walked one digit
    in this process and their children's batches dealt out."""
    weights, invariant, error = shipped
    sets = copying.sets_of(replace(invariant, shapes=invariant.shapes * scale))
    cell, roots = RnnCell(weights, error), _roots(sets) if rooted else None
    with threadpool_limits(limits=1, user_api="blas"):  # as the service walks, and each worker
        plain = walk(cell, sets, invariant.steps, roots=roots, **options)  # type: ignore[arg-type]
    pooled = walk_pool.pooled_walk(cell, sets, invariant.steps, roots=roots, **options)  # type: ignore[arg-type]
    assert walk_pool.cores() < 2 or multiprocessing.active_children(), "no worker walked"
    _same(plain, pooled)


def test_the_failures_meet_what_each_case_expects(
    shipped: tuple[RnnWeights, Invariant, float],
) -> None:
    """The cases above fail as they should, so their sameness is not of empty walks."""
    weights, invariant, error = shipped
    cell = RnnCell(weights, error)

    def pooled(scale: float, **options: object) -> Walk:
        sets = copying.sets_of(replace(invariant, shapes=invariant.shapes * scale))
        return walk_pool.pooled_walk(cell, sets, invariant.steps, roots=_roots(sets), **options)  # type: ignore[arg-type]

    assert pooled(1.0).failure is None
    assert "still leave their sets" in str(pooled(0.8).failure)
    assert pooled(1.0, most=40_000).failure == "the walk passes 40000 nodes"
    unsure = pooled(1.6, keep_going=True)
    assert unsure.slack <= 0
    assert "is not sure to win" in str(unsure.failure)


@pytest.mark.parametrize("keep_going", [False, True])
def test_a_walk_past_the_searchs_deadline_stops_where_it_is(
    shipped: tuple[RnnWeights, Invariant, float], keep_going: bool
) -> None:
    """A search out of time gets a walk that says so at once, in this process or pooled (whose
    workers then stop at their first chunk, even when the walk would keep going)."""
    weights, invariant, error = shipped
    sets = copying.sets_of(replace(invariant, shapes=invariant.shapes * 0.8))
    cell, roots = RnnCell(weights, error), _roots(sets)
    whole = walk(cell, sets, invariant.steps, keep_going=True, roots=roots)
    past = time.monotonic() - 1
    for walker in (walk, walk_pool.pooled_walk):
        cut = walker(cell, sets, invariant.steps, keep_going, roots, until=past)
        assert cut.failure == OUT_OF_TIME, walker
        assert cut.nodes < whole.nodes / 10


def test_a_cut_walk_stops_at_its_first_batch(
    shipped: tuple[RnnWeights, Invariant, float],
) -> None:
    """A chunk whose walk another worker has made pointless stops where it is, and says so;
    a cut never asked for changes nothing."""
    weights, invariant, error = shipped
    sets = copying.sets_of(invariant)
    cell, roots = RnnCell(weights, error), _roots(sets)
    plain = walk(cell, sets, invariant.steps, roots=roots)
    _same(plain, walk(cell, sets, invariant.steps, roots=roots, cut=lambda: False))
    cut = walk(cell, sets, invariant.steps, roots=roots, cut=lambda: True)
    assert cut.failure == CUT
    assert cut.nodes == 10 * BATCH < plain.nodes


def test_a_worker_takes_no_chunk_past_one_that_ends_the_walk(
    shipped: tuple[RnnWeights, Invariant, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sets too wide read a digit unsure in the first chunk: the worker shares that chunk's
    index and walks no later chunk, though the walk keeps going past open strings."""
    weights, invariant, error = shipped
    sets = copying.sets_of(replace(invariant, shapes=invariant.shapes * 1.6))
    cell, roots = RnnCell(weights, error), _roots(sets)
    chunks = walk_pool.split(len(roots.at))
    deal = multiprocessing.get_context("fork").Array("q", [0, len(chunks), 0])
    monkeypatch.setattr(walk_pool, "_deal", deal, raising=False)
    walker = partial(walk, cell, sets, invariant.steps, keep_going=True, roots=roots)
    done = walk_pool._walk_chunks(walker, chunks, None, True)
    unsure = min(i for i, part in done.items() if part.slack <= 0)
    assert sorted(done) == list(range(unsure + 1))
    assert unsure < len(chunks) - 1
    assert deal[1] == unsure


def test_a_worker_takes_no_chunk_once_the_chunks_walked_pass_the_budget(
    shipped: tuple[RnnWeights, Invariant, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chunk within the budget, the first two together past it: the walk stops in the
    second (the merge walks it again with what is left), so the third is not walked."""
    weights, invariant, error = shipped
    sets = copying.sets_of(invariant)
    cell, roots = RnnCell(weights, error), _roots(sets)
    chunks = walk_pool.split(len(roots.at))
    assert len(chunks) == 3
    alone = [walk(cell, sets, invariant.steps, roots=roots, starts=c).nodes for c in chunks]
    most = max(alone[:2])
    assert alone[0] + alone[1] > most
    deal = multiprocessing.get_context("fork").Array("q", [0, len(chunks), 0])
    monkeypatch.setattr(walk_pool, "_deal", deal, raising=False)
    walker = partial(walk, cell, sets, invariant.steps, roots=roots, most=most)
    done = walk_pool._walk_chunks(walker, chunks, most, False)
    assert sorted(done) == [0, 1]
    assert all(part.failure is None for part in done.values())
    assert (deal[1], deal[2]) == (1, alone[0] + alone[1])


def test_one_batch_of_starts_deals_out_its_childrens_batches(
    shipped: tuple[RnnWeights, Invariant, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 sets: the first digit is read here, and the workers walk the batches of children
    from there, each a batch of the one walk, in its order."""
    weights, invariant, error = shipped
    sets = copying.sets_of(invariant)
    cell = RnnCell(weights, error)
    dealt: list[walk_pool.Chunk] = []
    pooled = walk_pool._pooled

    def spied(
        walker: Callable[..., Walk],
        most: int | None,
        keep: bool,
        chunks: list[walk_pool.Chunk],
        head: Walk | None = None,
    ) -> Walk:
        dealt.extend(chunks)
        assert head is not None
        assert head.nodes == 10 * len(sets.keys)
        return pooled(walker, most, keep, chunks, head)

    monkeypatch.setattr(walk_pool, "_pooled", spied)
    walked = walk_pool.pooled_walk(cell, sets, invariant.steps)
    assert walked.failure is None
    if walk_pool.cores() < 2:
        assert not dealt
        return
    parts = [part for part in dealt if isinstance(part, Frontier)]
    assert len(parts) == len(dealt) > 1
    assert all(part.level == 1 for part in parts)
    sizes = [len(part.at) for part in parts]
    assert sizes[:-1] == [BATCH] * (len(parts) - 1)
    assert 0 < sizes[-1] <= BATCH
    # every child of the first digit, from every set, at most ten a set
    starts = np.bincount(np.concatenate([part.start for part in parts]), minlength=100)
    assert starts.max() <= 10
    assert starts.min() > 0


def _doubled(item: int) -> tuple[int, int]:
    return 2 * item, os.getpid()


def test_a_mapped_task_runs_on_the_workers_in_order() -> None:
    results = walk_pool.mapped(_doubled, list(range(50)))
    assert [value for value, _ in results] == [2 * i for i in range(50)]
    if walk_pool.cores() >= 2:
        assert {pid for _, pid in results} - {os.getpid()}, "no worker ran a task"


def test_the_polish_weighs_the_same_scalings_on_every_core(
    shipped: tuple[RnnWeights, Invariant, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each set's own tree, scaled, walked on the workers: the same gains as in this process."""
    weights, invariant, error = shipped
    sets = copying.sets_of(invariant)
    cell = RnnCell(weights, error)
    traced = walk(cell, sets, invariant.steps, hold=True, trace=True)
    pooled = shorten._scalings(cell, invariant, sets, traced)
    monkeypatch.setattr(walk_pool, "cores", lambda: 1)
    here = shorten._scalings(cell, invariant, sets, traced)
    assert pooled == here
    assert here, "no scaling gains: the comparison says nothing"


def test_on_one_core_the_walk_stays_in_this_process(
    shipped: tuple[RnnWeights, Invariant, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    weights, invariant, error = shipped
    sets = copying.sets_of(invariant)
    monkeypatch.setattr(walk_pool, "cores", lambda: 1)
    monkeypatch.setattr(walk_pool, "_executor", lambda _: pytest.fail("a worker was asked"))
    walked = walk_pool.pooled_walk(
        RnnCell(weights, error), sets, invariant.steps, roots=_roots(sets)
    )
    assert walked.failure is None


@pytest.fixture(scope="module")
def steady() -> tuple[RnnWeights, Invariant]:
    """A certificate of 1 000 sets (three-digit keys) and walked entries: the steady fit's, on
    a hand-made counter."""
    weights = leaky_counter()
    found = fit_steady(weights, 2)
    assert not isinstance(found, str), found
    return weights, found[0]


@pytest.mark.parametrize("scale", [1.0, 0.7])
def test_the_search_checks_what_the_service_checks(
    steady: tuple[RnnWeights, Invariant], scale: float
) -> None:
    """The same figures where the certificate holds, the same refusal where it does not."""
    weights, invariant = steady
    invariant = replace(invariant, shapes=invariant.shapes * scale)
    outcomes: list[Checked | str] = []
    for check in (decide.check, walk_pool.check):
        try:
            with threadpool_limits(limits=1, user_api="blas"):  # as the service checks
                outcomes.append(check(weights, invariant, DEFAULT_TANH_ERROR))
        except CertificateError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]
    assert isinstance(outcomes[0], str) == (scale < 1), outcomes[0]


def _start_workers_and_wait(pids: Path) -> None:
    """A search in a child process: its pool started, its workers' pids written, then idle."""
    walk_pool._executor(2).submit(os.getpid).result()
    pids.write_text(" ".join(str(p.pid) for p in multiprocessing.active_children()))
    time.sleep(60)


def _gone(pid: int) -> bool:
    """No such process, or one that has exited and waits to be reaped."""
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "\nState:\tZ" in status.read_text()


def test_the_workers_end_when_the_search_is_killed(tmp_path: Path) -> None:
    """A `decide` stopped by a signal to it alone (timeout, kill) leaves no worker behind."""
    pids = tmp_path / "pids"
    search = multiprocessing.get_context("fork").Process(
        target=_start_workers_and_wait, args=(pids,)
    )
    search.start()
    deadline = time.monotonic() + 30
    while not (pids.exists() and pids.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = [int(p) for p in pids.read_text().split()]
    assert len(workers) == 2
    search.kill()
    search.join()
    deadline = time.monotonic() + 5
    while not all(map(_gone, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(map(_gone, workers)), workers
