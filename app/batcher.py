"""Dynamic batching: concurrent small requests for one model share one model run.

Under load many requests are ready in the same event-loop turn; each handler queues its
numbers and awaits, and one callback on the next turn runs them all through the model
padded to the longest, then hands each request its own results. A lone request waits one
loop turn (microseconds). Long inputs never come here: they would pad every short one.
"""

import asyncio

from app.engine import EngineOptions, Result, answer_each
from app.inputs import Detail
from app.registry import LoadedModel

# Requests with more digits than this run on their own (see app.routes.increment).
BATCHED_DIGITS = 256


class Batcher:
    """Collects one loop turn's requests for a model and answers them in one run."""

    def __init__(self, model: LoadedModel, options: EngineOptions) -> None:
        self.model = model
        self.options = options
        self._pending: list[tuple[list[str], Detail, asyncio.Future[list[Result]]]] = []

    async def answer(self, numbers: list[str], detail: Detail) -> list[Result]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Result]] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)  # runs after every handler ready in this turn
        self._pending.append((numbers, detail, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        try:
            results = answer_each(self.model, [(n, d) for n, d, _ in pending], self.options)
        except Exception as exc:  # every waiting request sees the failure, none hangs
            for _, _, future in pending:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), result in zip(pending, results, strict=True):
            if not future.done():  # a client that went away cancelled its future
                future.set_result(result)
