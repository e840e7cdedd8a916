"""The search's walks on every core: core.walk.walk with its start sets (or roots) dealt out in
chunks to one worker process per core this process may use, and the chunks' walks merged into
the Walk that one walk from every start gives, bit for bit (on one BLAS thread, as the
service's check and each worker walk): a chunk is one of the walk's own batches of starts,
which it walks the same whatever else it walks, and the chunks are merged in order up to where
the one walk stops (its first failure, or its budget). The workers take the chunks in turn, and
none past one that ends the walk or, together, passes its budget (`_walk_chunks`). Starts that
are one batch (the 100 sets of two-digit keys) are walked one digit here, and the batches of
their children are the chunks: the one walk walks each of them, and its subtree, in turn.

The service never walks this way: its check at load runs on one core, as it must not take a
serving one. Here, the search's walks and its checks (`check`) run on all of them; only
core.decide.check decides, and it walks the same tree whichever walker it is given.
"""

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from core import decide
from core.cells import RnnCell
from core.copying import Ints, Invariant, Sets
from core.decide import Checked
from core.walk import BATCH, CUT, OUT_OF_TIME, Frontier, Roots, Trace, Walk, walk
from core.weights import RnnWeights

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import SynchronizedArray

# starts a chunk: enough chunks for the workers to finish together (a start's tree ranges from
# ten nodes to thousands), few enough that each stays a few of core.walk's batches
CHUNK = BATCH
T = TypeVar("T")
R = TypeVar("R")

# what a worker walks: a walk's starts (indices), or a batch of nodes it dealt out
Chunk = Ints | Frontier

_pool: ProcessPoolExecutor | None = None
# shared with the pool's workers, which inherit it: the next chunk to take, the first chunk
# known to end the walk (a worker takes no chunk past it, and cuts the one it walks), and the
# nodes of the walk's chunks walked so far (and of the walk that dealt them out)
_deal: "SynchronizedArray[int]"


def _forget_pool() -> None:
    global _pool
    _pool = None  # a forked child starts its own: the parent's workers answer the parent


os.register_at_fork(after_in_child=_forget_pool)


def cores() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def pooled_walk(
    cell: RnnCell,
    sets: Sets,
    longest: int,
    keep_going: bool = False,
    roots: Roots | None = None,
    most: int | None = None,
    hold: bool = False,
    trace: bool = False,
    until: float | None = None,
) -> Walk:
    """core.walk.walk (the same arguments), on every core. Past `until`, the walk is cut
    short (OUT_OF_TIME) wherever it has come to, not bit for bit."""
    count = len(sets.keys) if roots is None else len(roots.at)
    walker = partial(
        walk,
        cell,
        sets,
        longest,
        keep_going=keep_going,
        roots=roots,
        most=most,
        hold=hold,
        trace=trace,
        until=until,
    )
    if cores() < 2:
        return walker()
    if count > CHUNK:
        return _pooled(walker, most, keep_going, split(count))
    # the starts are one batch, walked here; the batches of their children are dealt out
    parts: list[Frontier] = []

    def dealt(part: Frontier) -> bool:
        parts.append(part)
        return True

    head = walker(deal=dealt)
    # none dealt: the first digit closed every string, or its batch ended the walk
    return _pooled(walker, most, keep_going, parts, head) if parts else head


def _pooled(
    walker: Callable[..., Walk],
    most: int | None,
    keep_going: bool,
    chunks: Sequence[Chunk],
    head: Walk | None = None,
) -> Walk:
    """The walks of these chunks on the workers, after `head` (the walk that dealt them out,
    if any), merged in order up to where the one walk stops."""
    workers = cores()
    executor = _executor(workers)
    _deal[:] = [0, len(chunks), 0 if head is None else head.nodes]
    walked: dict[int, Walk] = {}
    for task in [
        executor.submit(_walk_chunks, walker, chunks, most, keep_going) for _ in range(workers)
    ]:
        walked.update(task.result())
    parts = [] if head is None else [head]
    for i, chunk in enumerate(chunks):
        part = walked[i]  # only chunks past one that ends the walk are not walked, or cut
        assert part.failure != CUT, "a chunk was cut before the walk's end"
        if part.failure == OUT_OF_TIME:
            parts.append(part)
            break
        counted = sum(p.nodes for p in parts)
        if most is not None and counted + part.nodes > most:
            # the budget runs out in this chunk: walked again with what is left of it
            part = walker(most=most - counted, **_from(chunk))
            parts.append(replace(part, failure=f"the walk passes {most} nodes"))
            break
        parts.append(part)
        if ends(part, keep_going):
            break
    return _merged(parts)


def mapped(task: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """task(item) for every item, in order, on every core (one BLAS thread a worker)."""
    if cores() < 2 or len(items) < 2:
        return [task(item) for item in items]
    share = max(1, len(items) // (4 * cores()))  # a few tasks a worker: they differ in cost
    return list(_executor(cores()).map(partial(_limited, task), items, chunksize=share))


def _limited(task: Callable[[T], R], item: T) -> R:
    with threadpool_limits(limits=1, user_api="blas"):
        return task(item)


def _from(chunk: Chunk) -> dict[str, Any]:
    """core.walk.walk's argument that walks this chunk: its starts, or a batch dealt out."""
    return {"frontier": chunk} if isinstance(chunk, Frontier) else {"starts": chunk}


def split(count: int) -> list[Ints]:
    """The starts 0..count-1 in chunks of CHUNK, in order."""
    return [np.arange(first, min(first + CHUNK, count)) for first in range(0, count, CHUNK)]


def ends(part: Walk, keep_going: bool) -> bool:
    """A chunk's walk ends the whole walk: a digit read unsure, the search's time, or any other
    failure unless keep_going (a cut is none of these: it is past a chunk that ends it)."""
    if part.slack <= 0 or part.failure == OUT_OF_TIME:
        return True
    return part.failure not in (None, CUT) and not keep_going


def check(weights: RnnWeights, invariant: Invariant, tanh_error: float) -> Checked:
    """core.decide.check, its walks on every core."""
    return decide.check(weights, invariant, tanh_error, walker=pooled_walk)


def _executor(workers: int) -> ProcessPoolExecutor:
    global _pool, _deal
    if _pool is None:
        # forked: a worker needs no imports, and the search's arguments reach it pickled
        context = multiprocessing.get_context("fork")
        _deal = context.Array("q", 3)
        _pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_end_with_parent)
    return _pool


def shutdown() -> None:
    """Stop this process's workers, if it started any. A multiprocessing child that walked
    must, before it returns: its exit waits for its children, and skips the shutdown an
    interpreter's exit gives a pool."""
    global _pool
    if _pool is not None:
        _pool.shutdown()
        _pool = None


def _end_with_parent() -> None:
    """A worker ends when the search that started it does, however that ends (a stopped
    `decide` leaves no worker waiting for tasks that never come)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _walk_chunks(
    walker: Callable[..., Walk], chunks: Sequence[Chunk], most: int | None, keep_going: bool
) -> dict[int, Walk]:
    """Chunks walked in turn (walker: core.walk.walk with the pooled walk's arguments), the
    next one not yet taken by any worker, each within the whole budget, until a chunk ends the
    walk (a readout failure; any failure unless keep_going; the time). Its index is shared: no
    worker then takes a chunk past it, and a chunk past it being walked is cut short. Only a
    chunk that ends the walk is ever shared, so the merge stops at or before it, and never reads
    a chunk not walked or cut. Once the chunks walked pass the budget, so does every run of
    chunks from the first to the last one taken: that one is shared."""
    done: dict[int, Walk] = {}
    with threadpool_limits(limits=1, user_api="blas"):  # one thread per worker, per core
        while True:
            with _deal.get_lock():
                taken, end = _deal[0], _deal[1]
                _deal[0] = taken + 1
            if taken >= len(chunks) or taken > end:
                return done
            part = walker(
                cut=lambda: _deal[1] < taken,  # noqa: B023 (called within this iteration)
                **_from(chunks[taken]),
            )
            done[taken] = part
            with _deal.get_lock():
                _deal[2] += part.nodes
                if ends(part, keep_going):
                    _deal[1] = min(_deal[1], taken)
                if most is not None and _deal[2] > most:
                    _deal[1] = min(_deal[1], _deal[0] - 1)


def _merged(parts: list[Walk]) -> Walk:
    """The walk of every start from the walks of its chunks, in their order, up to where it
    stops: the failure is the first chunk's that has one, or a readout's (the walk names that
    one even after a leaf stayed open, and stops there)."""
    unsure = parts[-1].failure if parts[-1].slack <= 0 else None
    failure = unsure or next((p.failure for p in parts if p.failure is not None), None)
    traces = [p.trace for p in parts if p.trace is not None]
    return Walk(
        sum(p.nodes for p in parts),
        min(p.slack for p in parts),
        min(p.margin for p in parts),
        max(p.worst for p in parts),
        np.concatenate([p.open_targets for p in parts]),
        np.concatenate([p.open_coordinates for p in parts]),
        failure,
        np.maximum.reduce([p.held for p in parts]),
        _joined(traces) if traces else None,
    )


def _joined(traces: list[Trace]) -> Trace:
    return Trace(
        np.concatenate([t.target for t in traces]),
        np.concatenate([t.ratio for t in traces]),
        np.concatenate([t.closed for t in traces]),
        np.concatenate([t.start for t in traces]),
        np.concatenate([t.last for t in traces]),
    )
