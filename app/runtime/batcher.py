"""Dynamic batching: concurrent small requests for one model share one model run.

Under load many requests are ready in the same event-loop turn; each queues its numbers and
awaits, and one callback on the next turn runs them through the model padded to the longest,
then hands each request its own results. A lone request waits one loop turn (microseconds).
A caller whose requests arrive one a loop turn (gRPC's calls that run on the loop:
app.grpc.calls) may ask to `gather`: once a run has had company, the next runs wait that long
for more, instead of one turn, until LONELY_RUNS runs in a row answer one request each.
Only small requests come here (app.runtime.service decides), and one flush takes at most
MAX_FLUSH_STEPS digit steps, so it never holds the loop for long; the rest wait a turn.
"""

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from app import tracing
from app.runtime.answers import Answer, Detail
from app.runtime.engine import EngineOptions, answer_with_probabilities
from app.runtime.models import LoadedModel

MAX_FLUSH_STEPS = 4096  # rows x padded length of one flush: about a millisecond of work
LONELY_RUNS = 2  # runs alone in a row that end gathering (one is chance, at any load)

# numbers, detail, padded width, the future, whether it wants its probabilities too, and (when
# tracing) the request's span context and since when it waits
_Pending = tuple[list[str], Detail, int, "asyncio.Future[Any]", bool, tracing.Waiting | None]
Probabilities = npt.NDArray[np.float32]


def taken(sizes: Iterable[tuple[int, int]]) -> int:
    """How many of a queue's first runs, (rows, padded width) each, one model run takes: the
    first always, then while rows x the longest width stays within MAX_FLUSH_STEPS."""
    count, rows, longest = 0, 0, 0
    for size, width in sizes:
        rows, longest = rows + size, max(longest, width)
        if count and rows * longest > MAX_FLUSH_STEPS:
            break
        count += 1
    return count


def run_stacked(model: LoadedModel, tensors: list[npt.NDArray[np.int64]]) -> list[Probabilities]:
    """Digit tensors [rows, time] run once: zero padded at the end to the longest time (the
    network reads one way, so no earlier step changes) and stacked; each one's probabilities
    [rows, time, 10] cut back."""
    if len(tensors) == 1:
        return [model.run(tensors[0])]
    width = max(digits.shape[1] for digits in tensors)
    stacked = np.zeros((sum(digits.shape[0] for digits in tensors), width), dtype=np.int64)
    row = 0
    for digits in tensors:
        stacked[row : row + digits.shape[0], : digits.shape[1]] = digits
        row += digits.shape[0]
    probs = model.run(stacked)
    out, row = [], 0
    for digits in tensors:
        out.append(probs[row : row + digits.shape[0], : digits.shape[1]])
        row += digits.shape[0]
    return out


def _schedule(
    loop: asyncio.AbstractEventLoop, flush: Callable[[], None], gather: float, alone: int
) -> None:
    """A batch's run: after every handler ready in this loop turn, or, for a caller that
    gathers, `gather` seconds on unless the last runs were alone (module docstring)."""
    if gather and alone < LONELY_RUNS:
        loop.call_later(gather, flush)
    else:
        loop.call_soon(flush)


class Batcher:
    """Collects one loop turn's requests for a model and answers them in one run."""

    def __init__(self, model: LoadedModel, options: EngineOptions) -> None:
        self.model = model
        self.options = options
        self._pending: list[_Pending] = []
        self._alone = LONELY_RUNS  # runs in a row that answered one request (at most this)

    def busy(self) -> bool:
        """Requests are waiting for this batcher's next run."""
        return bool(self._pending)

    async def answer(self, numbers: list[str], detail: Detail) -> list[Answer]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Answer]] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)  # runs after every handler ready in this turn
        waiting = None if tracing.TRACER is None else tracing.Waiting()
        self._pending.append((numbers, detail, max(map(len, numbers)) + 1, future, False, waiting))
        return await future

    async def answer_with_probabilities(
        self, numbers: list[str], gather: float = 0.0
    ) -> tuple[list[Answer], Probabilities]:
        """Answers (no steps) and this request's own probabilities [numbers, longest + 1, 10]
        (the V2 `number` input): cut from the batch's, which padding at the end leaves equal.
        gather: seconds the run may wait for company (module docstring)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[list[Answer], Probabilities]] = loop.create_future()
        if not self._pending:
            _schedule(loop, self._flush, gather, self._alone)
        waiting = None if tracing.TRACER is None else tracing.Waiting()
        self._pending.append((numbers, "none", max(map(len, numbers)) + 1, future, True, waiting))
        return await future

    def _flush(self) -> None:
        pending = [p for p in self._pending if not p[3].done()]  # cancelled: client gone
        count = taken((len(numbers), width) for numbers, _, width, _, _, _ in pending)
        batch, self._pending = pending[:count], pending[count:]
        self._alone = 0 if count > 1 else min(self._alone + 1, LONELY_RUNS)
        if self._pending:
            asyncio.get_running_loop().call_soon(self._flush)  # the rest on the next turn
        if not batch:
            return
        started = tracing.now()
        try:
            results, probs = answer_with_probabilities(
                self.model, [(n, d) for n, d, _, _, _, _ in batch], self.options
            )
        except Exception as exc:  # every waiting request sees the failure, none hangs
            for _, _, _, future, _, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        if started:
            tracing.ran([p[5] for p in batch], started, len(probs))
        row = 0
        for (numbers, _, width, future, with_probs, _), result in zip(batch, results, strict=True):
            if not future.done():  # a client that went away cancelled its future
                if with_probs:
                    future.set_result((result, probs[row : row + len(numbers), :width]))
                else:
                    future.set_result(result)
            row += len(numbers)


_RawPending = tuple[
    npt.NDArray[np.int64], "asyncio.Future[npt.NDArray[np.float32]]", tracing.Waiting | None
]


class RawBatcher:
    """The same for raw digit tensors (KServe V2 `digits`): one loop turn's small tensors for
    a model, padded with zeros to the longest time and stacked, run once, each cut back.

    Padding at the end changes no earlier step (the network reads one way), so every request
    gets exactly the probabilities of its own tensor.
    """

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self._pending: list[_RawPending] = []
        self._alone = LONELY_RUNS

    def busy(self) -> bool:
        return bool(self._pending)

    async def run(
        self, digits: npt.NDArray[np.int64], gather: float = 0.0
    ) -> npt.NDArray[np.float32]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[npt.NDArray[np.float32]] = loop.create_future()
        if not self._pending:
            _schedule(loop, self._flush, gather, self._alone)
        self._pending.append(
            (digits, future, None if tracing.TRACER is None else tracing.Waiting())
        )
        return await future

    def _flush(self) -> None:
        pending = [p for p in self._pending if not p[1].done()]
        count = taken(digits.shape for digits, _, _ in pending)
        batch, self._pending = pending[:count], pending[count:]
        self._alone = 0 if count > 1 else min(self._alone + 1, LONELY_RUNS)
        if self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        if not batch:
            return
        started = tracing.now()
        try:
            results = run_stacked(self.model, [digits for digits, _, _ in batch])
        except Exception as exc:  # every waiting request sees the failure, none hangs
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        if started:
            tracing.ran([p[2] for p in batch], started, sum(len(r) for r in results))
        for (_, future, _), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
