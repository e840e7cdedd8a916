"""Dynamic batching: concurrent requests share model runs, and each gets its own answer."""

import asyncio
from typing import Any

import httpx
import numpy as np

from app.main import create_app, lifespan
from app.metrics import MODEL_RUN_SECONDS
from app.runtime.batcher import LONELY_RUNS
from app.runtime.engine import answer_with_probabilities
from app.settings import Settings
from core.codec import add_one


def model_runs(name: str) -> float:
    for metric in MODEL_RUN_SECONDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels["model"] == name:
                return sample.value
    return 0.0


async def concurrently(bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    app = create_app(Settings(walked_certificates="skip"))
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return list(await asyncio.gather(*(client.post("/increment", json=b) for b in bodies)))


def test_concurrent_requests_share_runs_and_keep_their_own_answers(shipped: object) -> None:
    numbers = [str(n) for n in range(990, 1022)]  # different lengths and carries
    bodies: list[dict[str, Any]] = [
        {"number": n, "detail": ["full", "summary", "none", "digits"][i % 4]}
        for i, n in enumerate(numbers)
    ]
    bodies += [
        {"number": "1" + "9" * 5, "model": "counter-post"},
        {"number": "12", "model": "nope"},
    ]
    before = {name: model_runs(name) for name in ("counter", "counter-post")}
    responses = asyncio.run(concurrently(bodies))

    for body, response in zip(bodies[:-1], responses[:-1], strict=True):
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["input"] == body["number"]
        exact = result["check"]["expected"] or result["output"]  # null: the output is exact
        assert exact == add_one(body["number"])
        assert result["model"]["name"] == body.get("model", "counter")
    for body, response in zip(bodies[:32], responses[:32], strict=True):
        result = response.json()
        assert result["output"] == add_one(body["number"])  # the shipped model is exact
        assert result["detail"] == body["detail"]
        steps = len(body["number"]) + 1
        listed = {"full": steps, "digits": steps, "summary": min(5, steps), "none": 0}
        assert len(result["steps"]) == listed[body["detail"]]
    assert responses[-1].status_code == 404  # a bad request in the crowd fails alone

    runs = model_runs("counter") - before["counter"]
    assert 1 <= runs < 32  # 32 requests, fewer model runs
    assert model_runs("counter-post") - before["counter-post"] == 1


def test_concurrent_raw_tensors_share_a_run_and_each_gets_its_own(shipped: object) -> None:
    """V2 `digits` tensors of different shapes in one loop turn: one run, padded and cut back,
    each what onnxruntime gives for that tensor alone."""
    rng = np.random.default_rng(4)
    shapes = [(1, 3), (2, 11), (1, 7)] * 4
    tensors = [rng.integers(0, 10, size=shape, dtype=np.int64) for shape in shapes]

    async def run() -> list[np.ndarray]:
        app = create_app(Settings(walked_certificates="skip"))
        async with lifespan(app):
            service = app.state.service
            before = model_runs("counter")
            got = await asyncio.gather(*(service.probabilities(None, t, None) for t in tensors))
            assert model_runs("counter") - before == 1  # twelve tensors, one run
            alone = service.registry.models["counter"]
            for tensor, probs in zip(tensors, got, strict=True):
                own = alone.run(tensor)  # padding moves only the last float32 bits
                np.testing.assert_allclose(probs, own, rtol=0, atol=1e-6)
                assert np.array_equal(probs.argmax(-1), own.argmax(-1))
            return list(got)

    shapes = [p.shape for p in asyncio.run(run())]
    assert shapes == [(*t.shape, 10) for t in tensors]


def test_a_request_alone_in_the_server_runs_at_once_without_a_batch(shipped: object) -> None:
    """With one request in progress nobody can join its batch: it runs inline (the batcher is
    never asked), with the same answer; with company it joins the batch."""
    body = {"number": "1299", "detail": "full"}
    used: list[int] = []

    async def run(in_progress: int) -> httpx.Response:
        app = create_app(Settings(walked_certificates="skip"))
        async with lifespan(app):
            service = app.state.service
            service.traffic.in_flight = in_progress
            batcher = service.batchers["counter"]
            original = batcher.answer

            async def recorded(*args: Any) -> Any:
                used.append(in_progress)
                return await original(*args)

            batcher.answer = recorded
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.post("/increment", json=body)

    alone = asyncio.run(run(1))
    batched = asyncio.run(run(2))
    unknown = asyncio.run(run(0))  # a test client: cannot tell, so batch
    assert used == [2, 0]
    assert alone.json() == batched.json() == unknown.json()
    assert alone.json()["output"] == "1300"


def test_a_large_body_the_queue_cannot_take_is_refused_before_it_is_read(shipped: object) -> None:
    """With work queued, a body whose bytes (about its digits) would pass the pending-steps
    bound gets 503 with Retry-After before it is read; a small body, or any body on an idle
    service, is read as usual."""
    numbers = ["7" * 1952] * 1024  # 2 MB of digits, about 2 million steps
    settings = Settings(max_pending_steps=3_000_000)

    async def run(queued: int) -> list[httpx.Response]:
        app = create_app(settings)
        async with lifespan(app):
            service = app.state.service
            service.pending_steps = queued  # as if other runs were queued or running
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                large = await client.post(
                    "/increment/batch", json={"numbers": numbers, "detail": "none"}
                )
                small = await client.post("/increment", json={"number": "41"})
                return [large, small]

    busy_large, busy_small = asyncio.run(run(1_500_000))
    assert busy_large.status_code == 503
    assert busy_large.headers["retry-after"] == "1"
    assert "COUNTER_MAX_PENDING_STEPS" in busy_large.json()["message"]
    assert "bytes" in busy_large.json()["message"]  # refused on its size, not after parsing
    assert busy_small.status_code == 200
    idle_large, _ = asyncio.run(run(0))
    assert idle_large.status_code == 200
    assert [r["output"] for r in idle_large.json()["results"]] == [add_one(numbers[0])] * 1024


def test_v2_numbers_share_runs_with_increments_and_keep_their_own_probabilities(
    shipped: object,
) -> None:
    """V2 `number` requests (several numbers each) in one loop turn share one run, also beside
    /increment requests, and each gets its own answers and probabilities [its numbers, its
    longest + 1, 10], as a run of its numbers alone gives them."""
    groups = [["1299", "7"], ["99999999"], ["0", "41", "1476233999"]] * 4
    singles = [str(n) for n in range(90, 102)]

    async def run() -> tuple[list[Any], list[httpx.Response], float]:
        app = create_app(Settings(walked_certificates="skip"))
        async with lifespan(app):
            service = app.state.service
            before = model_runs("counter")
            transport = httpx.ASGITransport(app=app)
            v2 = [service.numbers("counter", numbers, None) for numbers in groups]
            got = await asyncio.gather(*v2)
            runs = model_runs("counter") - before  # the V2 requests alone: one run
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                v2 = [service.numbers("counter", numbers, None) for numbers in groups]
                increments = [client.post("/increment", json={"number": n}) for n in singles]
                mixed = await asyncio.gather(*v2, *increments)
            assert [a for a, _ in mixed[: len(groups)]] == [a for a, _ in got]
            got += mixed[len(groups) :]
            alone = [await asyncio.to_thread(_alone, service, numbers) for numbers in groups]
        return list(zip(got[: len(groups)], alone, strict=True)), got[len(groups) :], runs

    def _alone(service: Any, numbers: list[str]) -> Any:
        results, probs = answer_with_probabilities(
            service.registry.models["counter"], [(numbers, "none")], service.options
        )
        return results[0], probs

    pairs, increments, runs = asyncio.run(run())
    assert runs == 1  # twelve V2 requests, 24 numbers: one run
    for ((answers, probs), (own_answers, own_probs)), numbers in zip(pairs, groups, strict=True):
        assert [a["output"] for a in answers] == [add_one(n) for n in numbers]
        assert [a["proved"] for a in answers] == [a["proved"] for a in own_answers]
        assert probs.shape == (len(numbers), max(map(len, numbers)) + 1, 10)
        np.testing.assert_allclose(probs, own_probs, rtol=0, atol=1e-6)
        assert np.array_equal(probs.argmax(-1), own_probs.argmax(-1))
    assert [r.json()["output"] for r in increments] == [add_one(n) for n in singles]


def test_calls_that_gather_share_a_run_across_loop_turns_until_they_come_alone(
    shipped: object,
) -> None:
    """gRPC's calls reach the loop one a turn: once a run has had company, a gathering run
    waits for the calls of the next turns too; LONELY_RUNS runs alone in a row end the wait
    (then a lone call is not held: with an hour's window it is still answered)."""
    numbers = ["9", "1299", "41", "999"]

    async def run() -> None:
        app = create_app(Settings(walked_certificates="skip"))
        async with lifespan(app):
            service = app.state.service

            async def one(number: str, gather: float) -> str:
                answers, probs = await service.numbers(None, [number], None, None, gather)
                assert probs.shape == (1, len(number) + 1, 10)
                return str(answers[0]["output"])

            async def in_turns(gather: float) -> float:
                """The numbers started one loop turn apart: the model runs they took."""
                before = model_runs("counter")
                tasks = []
                for number in numbers:
                    tasks.append(asyncio.ensure_future(one(number, gather)))
                    await asyncio.sleep(0)
                outputs = await asyncio.gather(*tasks)
                assert outputs == [add_one(n) for n in numbers]
                return model_runs("counter") - before

            assert await in_turns(0.0) == len(numbers)  # one turn each: no sharing
            await asyncio.gather(one("5", 0.0), one("6", 0.0))  # one turn, one run: company
            assert await in_turns(0.5) == 1  # a run that waits gathers them all
            for number in ("7", "8")[:LONELY_RUNS]:  # alone: each waits its window
                assert await one(number, 0.01) == add_one(number)
            for number in ("70", "71"):  # and no more
                assert await asyncio.wait_for(one(number, 3600.0), 60) == add_one(number)

    asyncio.run(run())
