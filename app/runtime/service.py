"""CounterService: the runtime both protocols call (the counter's JSON and KServe V2).

It holds the models, the limits and the decision of where each run happens, so a route only
translates HTTP into one call. Work is placed by its cost, rows x padded length in digit steps:

- small (<= BATCHED_STEPS): joins the loop turn's batch (app.runtime.batcher), one run for many
  (the counter's JSON and the V2 `number` input alike);
  unless the server says this is the only request in progress, when it runs inline at once
  (a batch of one would only wait a loop turn for nobody);
- medium (<= INLINE_STEPS): runs inline on the event loop, about a millisecond at most;
- large: a worker thread (onnxruntime releases the GIL), at most COUNTER_WORKER_THREADS at
  once. Admission control counts the digit steps admitted and not finished: past
  COUNTER_MAX_PENDING_STEPS a request is refused at once with 503 and Retry-After instead of
  queueing without end. A run whose client goes away, or that passes COUNTER_MAX_RUN_SECONDS,
  is stopped: onnxruntime's terminate flag ends it within a few steps.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, nullcontext, suppress
from typing import Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from app import tracing
from app.errors import Kind, ServiceError, not_ready, preview, unknown_model
from app.metrics import MODELS_LOADED, PENDING_STEPS
from app.runtime.admission import LARGE_BODY, LargeAdmission
from app.runtime.answers import (
    Answer,
    CountEnd,
    CountLine,
    CountReason,
    Detail,
    resolve_detail,
)
from app.runtime.batcher import Batcher, RawBatcher
from app.runtime.engine import EngineOptions, answer, answer_with_probabilities
from app.runtime.models import LoadedModel, Registry
from app.runtime.traffic import Traffic
from app.settings import Settings

BATCHED_STEPS = 256  # digit steps (rows x padded length) that join a shared batch
INLINE_STEPS = 4096  # beyond this, a worker thread: about a millisecond on the loop at most
T = TypeVar("T")


_SMALL_BODY = nullcontext()  # what admission holds for a small body: nothing


def count_line(index: int, result: Answer) -> CountLine:
    """One line of a count: an answer, as POST /count streams it."""
    correct = result["check"]["correct"]
    return {
        "index": index,
        "input": result["input"],
        "output": result["output"],
        "expected": result["output"] if correct else str(result["check"]["expected"]),
        "correct": correct,
        "proved": result["proved"],
        "carry_run": result["carry_run"],
        "flags": result["flags"],
        "warnings": result["warnings"],
    }


class Older(NamedTuple):
    """A version a reload replaced, served by version (its batchers with it) until dropped."""

    model: LoadedModel
    batcher: Batcher
    raw_batcher: RawBatcher


class CounterService:
    """The models, the limits and where each run happens; built once per running app."""

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        traffic: Traffic | None = None,
    ) -> None:
        """traffic: the server's (app.runtime.traffic); with 1 request in flight, nobody can
        share this one's batch, and draining ends counts."""
        self.registry = registry
        self.traffic = traffic or Traffic()
        self.settings = settings
        self.options = EngineOptions(
            settings.low_confidence, settings.summary_steps, settings.echo_digits
        )
        self.batchers = {name: Batcher(m, self.options) for name, m in registry.models.items()}
        self.raw_batchers = {name: RawBatcher(m) for name, m in registry.models.items()}
        # name -> version -> an older version, oldest first (COUNTER_MAX_MODEL_VERSIONS)
        self.older: dict[str, dict[str, Older]] = {}
        # calls of these models in progress on gRPC's handler threads (app.grpc.threads)
        self.thread_calls: Callable[[list[LoadedModel]], bool] = lambda _: False
        self._executor = ThreadPoolExecutor(settings.worker_threads, "counter-worker")
        self._workers = asyncio.Semaphore(settings.worker_threads)
        self.pending_steps = 0  # admitted to the workers and not finished
        self.large_requests = 0  # requests with large bodies held now (arrived to answered)
        self.large_reading = 0  # large bodies being received now
        self.streams = 0  # POST /count streams under way
        self._ready = False  # every model loaded and warm (the lifespan sets it)
        self.serving = False  # models loaded: requests are answered, draining or not

    @property
    def ready(self) -> bool:
        """Every model loaded and warm, and not draining (/readyz)."""
        return self._ready and not self.traffic.draining

    @ready.setter
    def ready(self, ready: bool) -> None:
        self._ready = ready

    @property
    def draining(self) -> bool:
        """SIGTERM received: finish in-flight work, take no more."""
        return self.traffic.draining

    @draining.setter
    def draining(self, draining: bool) -> None:
        self.traffic.draining = draining

    def install(self, model: LoadedModel) -> None:
        """Serve this model (a new one, or a new version in place of the old), in one step:
        a request finds the old model and its batchers or the new ones, never a mix. The
        version replaced stays served by version, up to COUNTER_MAX_MODEL_VERSIONS in all; an
        older one dropped still answers the requests already in its batch."""
        name = model.card.name
        older = self.older.setdefault(name, {})
        older.pop(model.card.version, None)  # loaded again: the current one from now on
        current = self.registry.models.get(name)
        if current is not None and current.card.version != model.card.version:
            replaced = Older(current, self.batchers[name], self.raw_batchers[name])
            older[current.card.version] = replaced
        while older and len(older) >= self.settings.max_model_versions:
            del older[next(iter(older))]
        self.batchers[name] = Batcher(model, self.options)
        self.raw_batchers[name] = RawBatcher(model)
        self.registry.models[name] = model
        self.registry.skipped[:] = [s for s in self.registry.skipped if s.path.stem != name]
        MODELS_LOADED.set(len(self.registry.models))

    def remove(self, name: str) -> list[Batcher | RawBatcher]:
        """Stop serving a model (404 from now on); its batchers, to wait for their last run."""
        if name not in self.registry.models:
            raise unknown_model(name, self.registry.names)
        del self.registry.models[name]
        MODELS_LOADED.set(len(self.registry.models))
        older = self.older.pop(name, {}).values()
        return [
            self.batchers.pop(name),
            self.raw_batchers.pop(name),
            *(b for o in older for b in (o.batcher, o.raw_batcher)),
        ]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def model(self, name: str | None, version: str | None = None) -> LoadedModel:
        """The named model (the default for None), its latest version or the one named; 404
        if not served, 503 if not ready."""
        if not self.serving:
            raise not_ready()
        model = self.registry.find(name)
        if model is None:
            raise unknown_model(name, self.registry.names)
        if version is None or version == model.card.version:
            return model
        older = self.older.get(model.card.name, {}).get(version)
        if older is None:
            raise ServiceError(
                Kind.UNKNOWN_MODEL,
                f"model {preview(model.card.name)} has no version {preview(version)}; it serves "
                f"{', '.join(self.versions(model.card.name))}",
            )
        return older.model

    def versions(self, name: str) -> list[str]:
        """The versions of a model served, the latest first."""
        return [self.registry.models[name].card.version, *reversed(self.older.get(name, {}))]

    def _batchers(self, model: LoadedModel) -> tuple[Batcher, RawBatcher]:
        """The batchers of this model (of its version)."""
        name = model.card.name
        batcher = self.batchers[name]
        if batcher.model is model:
            return batcher, self.raw_batchers[name]
        older = self.older[name][model.card.version]
        return older.batcher, older.raw_batcher

    def admitted(self, declared_length: int | None) -> AbstractAsyncContextManager[None]:
        """Hold a request whose body is large (or of unknown length) until its answer is made;
        past COUNTER_MAX_LARGE_REQUESTS of them, 503 at once.

        Checked before the body is read, so 64 clients each sending a 10^6-digit number cost
        the memory of a few, not of 64 bodies and their parsed copies. An HTTP body read by
        app.http.exchange.read_body takes its slot only once it has arrived whole (a client
        trickling its body holds none; the body deadline closes it), and at most
        READERS_PER_SLOT bodies per slot are read at once. A small body holds nothing (and
        skips the cost of a context manager).
        """
        if declared_length is not None and declared_length <= LARGE_BODY:
            return _SMALL_BODY
        return LargeAdmission(self, declared_length)

    def busy(self, what: str) -> ServiceError:
        limit = self.settings.max_large_requests
        return ServiceError(
            Kind.OVERLOADED,
            f"the service is busy: {what}, the limit is {limit} (COUNTER_MAX_LARGE_REQUESTS); "
            "retry shortly",
            {"retry-after": "1"},
        )

    async def increment(
        self,
        numbers: list[str],
        model_name: str | None,
        detail_asked: str,
        stop: asyncio.Event | None = None,
    ) -> list[Answer]:
        """n + 1 for each number by one model run; `stop` set means the client went away."""
        model = self.model(model_name)
        detail: Detail = resolve_detail(
            detail_asked, sum(map(len, numbers)), self.settings.max_detail_digits
        )
        cost = len(numbers) * (max(map(len, numbers)) + 1)
        if cost <= BATCHED_STEPS and self.traffic.in_flight != 1:
            return await self.batchers[model.card.name].answer(numbers, detail)
        if cost <= INLINE_STEPS:
            if tracing.TRACER is None:  # off: the plain call, not even a do-nothing `with`
                return answer(model, numbers, detail, self.options)
            with tracing.span("model run"):
                return answer(model, numbers, detail, self.options)

        def work(run_options: Any) -> list[Answer]:
            return answer(model, numbers, detail, self.options, run_options)

        return await self.off_loop(cost, work, stop)

    async def numbers(
        self,
        model_name: str | None,
        numbers: list[str],
        stop: asyncio.Event | None,
        version: str | None = None,
        gather: float = 0.0,
    ) -> tuple[list[Answer], npt.NDArray[np.float32]]:
        """Answers (no steps) and the probabilities [numbers, longest + 1, 10], one run;
        gather: how long a batched run may wait for company (app.runtime.batcher)."""
        model = self.model(model_name, version)

        def work(run_options: Any) -> tuple[list[Answer], npt.NDArray[np.float32]]:
            results, probs = answer_with_probabilities(
                model, [(numbers, "none")], self.options, run_options
            )
            return results[0], probs

        cost = len(numbers) * (max(map(len, numbers)) + 1)
        if cost <= BATCHED_STEPS and self.traffic.in_flight != 1:  # placed as increment's are
            return await self._batchers(model)[0].answer_with_probabilities(numbers, gather)
        if cost <= INLINE_STEPS:
            if tracing.TRACER is None:
                return work(None)
            with tracing.span("model run"):
                return work(None)
        return await self.off_loop(cost, work, stop)

    async def probabilities(
        self,
        model_name: str | None,
        digits: npt.NDArray[np.int64],
        stop: asyncio.Event | None,
        version: str | None = None,
        gather: float = 0.0,
    ) -> npt.NDArray[np.float32]:
        """The raw model: int64 digits [batch, time] -> float32 probabilities [batch, time, 10]
        (gather: as numbers')."""
        model = self.model(model_name, version)
        cost = int(digits.size)
        if cost <= BATCHED_STEPS and self.traffic.in_flight != 1:
            return await self._batchers(model)[1].run(digits, gather)
        if cost <= INLINE_STEPS:
            if tracing.TRACER is None:
                return model.run(digits)
            with tracing.span("model run"):
                return model.run(digits)
        return await self.off_loop(cost, lambda options: model.run(digits, options), stop)

    async def off_loop(
        self, cost: int, work: Callable[[Any], T], stop: asyncio.Event | None = None
    ) -> T:
        """Run work(run_options) on a worker thread, under admission control and a deadline."""
        limit = self.settings.max_pending_steps
        if self.pending_steps and self.pending_steps + cost > limit:
            raise ServiceError(
                Kind.OVERLOADED,
                f"the service is busy: {self.pending_steps} digit steps are queued or running, "
                f"and {cost} more would pass the limit of {limit} (COUNTER_MAX_PENDING_STEPS); "
                "retry shortly",
                {"retry-after": "1"},
            )
        self.pending_steps += cost
        PENDING_STEPS.set(self.pending_steps)
        run_options = ort.RunOptions()
        deadline = asyncio.get_running_loop().time() + self.settings.max_run_seconds
        try:
            with tracing.span("queue"):  # for a worker thread
                acquire = asyncio.ensure_future(self._workers.acquire())
                await self._wait(acquire, stop, deadline, None)
            try:
                loop = asyncio.get_running_loop()
                with tracing.span("model run"):
                    future = loop.run_in_executor(self._executor, work, run_options)
                    return await self._wait(future, stop, deadline, run_options)
            finally:
                self._workers.release()
        finally:
            self.pending_steps -= cost
            PENDING_STEPS.set(self.pending_steps)

    async def _wait(
        self,
        task: "asyncio.Future[T]",
        stop: asyncio.Event | None,
        deadline: float,
        run_options: Any,
    ) -> T:
        """The task's result, unless the client goes away or the deadline passes first."""
        stopped = asyncio.ensure_future(stop.wait()) if stop is not None else None
        waiting: set[asyncio.Future[Any]] = {task} if stopped is None else {task, stopped}
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            done, _ = await asyncio.wait(waiting, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            if stopped is not None:
                stopped.cancel()
        if task in done:
            return task.result()
        if run_options is not None:
            run_options.terminate = True  # onnxruntime stops within a few steps
            with suppress(Exception):
                await task  # the thread is free again before the request ends
        else:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            if not task.cancelled() and task.exception() is None:
                self._workers.release()  # acquired just as the wait ended: give it back
        if stopped is not None and stopped in done:
            raise ServiceError(Kind.CLIENT_DISCONNECTED, "the client went away; the run stopped")
        raise ServiceError(
            Kind.TIMED_OUT,
            f"the run took longer than {self.settings.max_run_seconds} s "
            "(COUNTER_MAX_RUN_SECONDS) and was stopped; send fewer or shorter numbers",
            {"retry-after": "1"},  # a run times out when the workers are busy, too
        )

    async def count(
        self,
        start: str,
        count: int,
        model_name: str | None,
        stop_on_error: bool,
        stop: asyncio.Event | None = None,
    ) -> AsyncIterator[CountLine | CountEnd]:
        """The model counting on from `start`, its own answer fed back as the next input."""
        model = self.model(model_name)
        number, sent, wrong = start, 0, 0
        reason: CountReason = "count"
        deadline = asyncio.get_running_loop().time() + self.settings.max_count_seconds
        while sent < count:
            if asyncio.get_running_loop().time() > deadline:
                reason = "time_limit"
                break
            if self.draining:  # SIGTERM: end now, saying so, before the connection closes
                reason = "shutdown"
                break
            (result,) = await self.increment([number], model.card.name, "none", stop)
            sent += 1
            line = count_line(sent, result)
            wrong += not line["correct"]
            yield line
            if stop_on_error and not line["correct"]:
                reason = "error"
                break
            number = result["output"]
            await asyncio.sleep(0)  # let every other request in between two numbers
        yield {"done": True, "reason": reason, "sent": sent, "wrong": wrong}
