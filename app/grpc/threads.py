"""Model runs shared between gRPC handler threads (grpc's synchronous server, app.grpc.server).

A handler thread with a small run queues it here. If no run of this model is under way, the
thread runs at once, taking every run queued then (itself alone at low load: nobody waits);
otherwise it sleeps until the run in progress ends, when the thread that ran it hands it its
answer, or, if its run was not in that batch, the turn to run the next batch. On one core the
other threads get the CPU only when the running thread waits, so, as app.runtime.batcher's
`gather`, once a run has had company the thread about to run first waits while the calls in
flight parse and queue: `gather` seconds (COUNTER_GRPC_BATCH_WINDOW_MS) at most, and only until
as many calls are queued as the largest of the last RECENT_RUNS runs took (then the calls in
circulation have come, and the rest of the window would idle the core). It stops gathering
once LONELY_RUNS runs in a row answer one call each; a lone call never waits. One batch takes
at most MAX_FLUSH_STEPS digit steps, as app.runtime.batcher's.
"""

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from app import tracing
from app.runtime.answers import Answer
from app.runtime.batcher import LONELY_RUNS, run_stacked, taken
from app.runtime.engine import EngineOptions, answer_with_probabilities
from app.runtime.models import LoadedModel
from app.runtime.service import CounterService

Probabilities = npt.NDArray[np.float32]
# The largest of this many recent runs, not the last one: a run cut short by a late call
# would otherwise make the next runs wait for as few calls, and stay short.
RECENT_RUNS = 32
Work = TypeVar("Work")
Result = TypeVar("Result")


class _Waiter(Generic[Work, Result]):
    """One queued run: its work, and a lock held until it has its result or its turn."""

    __slots__ = ("error", "lead", "result", "rows", "waiting", "wake", "width", "work")

    def __init__(self, work: Work, rows: int, width: int) -> None:
        self.work, self.rows, self.width = work, rows, width
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.lead = False  # woken to run the next batch, not with a result
        self.wake = threading.Lock()
        self.wake.acquire()  # released by the thread that wakes this one
        self.waiting = None if tracing.TRACER is None else tracing.Waiting()


class _Shared(Generic[Work, Result]):
    """The queue and the turn to run; run_batch maps a batch's work to its results, in order."""

    def __init__(
        self, run_batch: Callable[[list[Work]], tuple[list[Result], int]], gather: float
    ) -> None:
        self._run_batch = run_batch
        self._gather = gather
        self._lock = threading.Lock()
        self._pending: list[_Waiter[Work, Result]] = []
        self._running = False
        self._alone = LONELY_RUNS  # runs in a row that answered one call (at most this)
        self._sizes: deque[int] = deque(maxlen=RECENT_RUNS)  # calls each recent run took
        self._enough = 1  # a gathering run starts once this many calls are queued
        self._gathering = False
        self._company = threading.Event()  # set when the gathering run has enough company

    def submit(self, work: Work, rows: int, width: int) -> Result:
        me: _Waiter[Work, Result] = _Waiter(work, rows, width)
        with self._lock:
            self._pending.append(me)
            lead = not self._running
            self._running = True
            if self._gathering and len(self._pending) >= self._enough:
                self._company.set()
        if not lead:
            me.wake.acquire()  # the GIL is released while this thread sleeps
            if not me.lead:
                if me.error is not None:
                    raise me.error
                return me.result  # type: ignore[return-value]
        self._run_next()
        if me.error is not None:
            raise me.error
        return me.result  # type: ignore[return-value]

    def _run_next(self) -> None:
        """Run the queue's first batch, answer its threads, and pass the turn on. The thread
        that runs is always the queue's first: it found no run under way, or was woken first."""
        if self._gather and self._alone < LONELY_RUNS:
            with self._lock:
                self._gathering = len(self._pending) < self._enough
                self._company.clear()
            if self._gathering:
                # the GIL and the core go to the calls in flight
                self._company.wait(self._gather)
        with self._lock:
            self._gathering = False
            count = taken((w.rows, w.width) for w in self._pending)
            batch, self._pending = self._pending[:count], self._pending[count:]
        self._alone = 0 if count > 1 else min(self._alone + 1, LONELY_RUNS)
        self._sizes.append(count)
        self._enough = max(self._sizes)
        started = tracing.now()
        try:
            results, run_rows = self._run_batch([w.work for w in batch])
            for waiter, result in zip(batch, results, strict=True):
                waiter.result = result
            if started:
                tracing.ran([w.waiting for w in batch], started, run_rows)
        except BaseException as exc:  # every waiting thread sees the failure, none hangs
            for waiter in batch:
                waiter.error = exc
        with self._lock:
            following = self._pending[0] if self._pending else None
            self._running = following is not None
        for waiter in batch[1:]:  # the first is this thread's own (module docstring)
            waiter.wake.release()
        if following is not None:
            following.lead = True
            following.wake.release()


class NumberRuns:
    """The V2 `number` input's small runs for one model: answers (no steps) and each call's own
    probabilities [numbers, longest + 1, 10], cut from the batch's (end padding leaves them)."""

    def __init__(self, model: LoadedModel, options: EngineOptions, gather: float) -> None:
        self.model = model
        self.options = options
        self._shared: _Shared[list[str], tuple[list[Answer], Probabilities]] = _Shared(
            self._run, gather
        )

    def run(self, numbers: list[str]) -> tuple[list[Answer], Probabilities]:
        return self._shared.submit(numbers, len(numbers), max(map(len, numbers)) + 1)

    def _run(self, batch: list[list[str]]) -> tuple[list[tuple[list[Answer], Probabilities]], int]:
        results, probs = answer_with_probabilities(
            self.model, [(numbers, "none") for numbers in batch], self.options
        )
        out, row = [], 0
        for numbers, answers in zip(batch, results, strict=True):
            width = max(map(len, numbers)) + 1
            out.append((answers, probs[row : row + len(numbers), :width]))
            row += len(numbers)
        return out, row


class DigitRuns:
    """The raw `digits` input's small runs for one model: stacked, zero padded to the longest
    time (the network reads one way: no earlier step changes), run once, each cut back."""

    def __init__(self, model: LoadedModel, gather: float) -> None:
        self.model = model
        self._shared: _Shared[npt.NDArray[np.int64], Probabilities] = _Shared(self._run, gather)

    def run(self, digits: npt.NDArray[np.int64]) -> Probabilities:
        return self._shared.submit(digits, digits.shape[0], digits.shape[1])

    def _run(self, batch: list[npt.NDArray[np.int64]]) -> tuple[list[Probabilities], int]:
        return run_stacked(self.model, batch), sum(digits.shape[0] for digits in batch)


class ModelRuns:
    """One model's (one version's) shared runs, of either input."""

    def __init__(self, model: LoadedModel, options: EngineOptions, gather: float) -> None:
        self.model = model
        self.numbers = NumberRuns(model, options, gather)
        self.digits = DigitRuns(model, gather)


class Runs:
    """The shared runs of every model the service serves, made on a model's first call."""

    def __init__(self, service: CounterService, gather: float) -> None:
        self.service = service
        self.gather = gather
        self._lock = threading.Lock()
        self._runs: dict[int, ModelRuns] = {}  # by id(model): each holds its model, so no reuse
        self._calls_lock = threading.Lock()
        self._calls: dict[int, int] = {}  # calls in progress by id(model): each holds its model

    @contextmanager
    def call(self, find: Callable[[], LoadedModel]) -> Iterator[LoadedModel]:
        """The model a call serves (`find`: the service's, 404 if gone), counted as in progress
        until the call ends. Found and counted under one lock, which `busy` takes too: an unload
        that removed the model and then finds none of its calls counted has none to wait for
        (a call that finds it later gets 404)."""
        with self._calls_lock:
            model = find()
            self._calls[id(model)] = self._calls.get(id(model), 0) + 1
        try:
            yield model
        finally:
            with self._calls_lock:
                left = self._calls.pop(id(model)) - 1
                if left:
                    self._calls[id(model)] = left

    def busy(self, models: list[LoadedModel]) -> bool:
        """Whether a call of any of these models is in progress on a handler thread."""
        with self._calls_lock:
            return any(id(model) in self._calls for model in models)

    def of(self, model: LoadedModel) -> ModelRuns:
        runs = self._runs.get(id(model))
        if runs is not None:
            return runs
        with self._lock:
            runs = self._runs.get(id(model))
            if runs is None:
                # a new model or version: forget those the service no longer serves
                # (copied whole first: the loop may install a model meanwhile)
                served = {id(m) for m in list(self.service.registry.models.values())}
                served |= {
                    id(o.model) for v in list(self.service.older.values()) for o in list(v.values())
                }
                kept = {key: r for key, r in self._runs.items() if key in served}
                runs = kept[id(model)] = ModelRuns(model, self.service.options, self.gather)
                self._runs = kept  # readers see the old dict or this one, whole
        return runs
