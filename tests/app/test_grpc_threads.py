"""app.grpc.threads: gRPC handler threads share model runs, and a run that waits for company
starts as soon as its company has come, not at the end of the window."""

import threading
import time
from collections.abc import Callable

from app.grpc.threads import _Shared

Runs = list[list[str]]


def _recorded(
    gates: dict[str, threading.Event],
) -> tuple[Runs, Callable[[list[str]], tuple[list[str], int]]]:
    """The runs made, and a run_batch that records each batch and holds it while a gate of
    one of its calls is closed."""
    runs: Runs = []

    def run_batch(batch: list[str]) -> tuple[list[str], int]:
        runs.append(list(batch))
        for call in batch:
            if call in gates:
                assert gates[call].wait(10)
        return [call.upper() for call in batch], len(batch)

    return runs, run_batch


def _submit(
    shared: _Shared[str, str], call: str, answers: dict[str, tuple[str, float]]
) -> threading.Thread:
    def one() -> None:
        answer = shared.submit(call, 1, 2)
        answers[call] = (answer, time.monotonic())

    thread = threading.Thread(target=one)
    thread.start()
    return thread


def _until(happened: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not happened():
        assert time.monotonic() < deadline, "the threads did not get there"
        time.sleep(0.001)


def _a_then_b_and_c(
    shared: _Shared[str, str],
    runs: Runs,
    gates: dict[str, threading.Event],
    answers: dict[str, tuple[str, float]],
) -> list[threading.Thread]:
    """a runs alone (nobody waits), held by its gate; b and c queue meanwhile, then run
    together, so the next run that gathers waits for two calls."""
    threads = [_submit(shared, "a", answers)]
    _until(lambda: runs == [["a"]])
    threads += [_submit(shared, "b", answers), _submit(shared, "c", answers)]
    _until(lambda: len(shared._pending) == 2)
    gates["a"].set()
    _until(lambda: runs == [["a"], ["b", "c"]])
    return threads


def test_a_run_waiting_for_company_starts_once_as_many_calls_queue_as_recent_runs_took() -> None:
    """After a run of two, d queues while b's run holds: once it leads, it waits up to the
    whole window (10 s) but starts as soon as e comes, and both get their own answers from one
    run."""
    gates = {name: threading.Event() for name in "ab"}
    runs, run_batch = _recorded(gates)
    shared: _Shared[str, str] = _Shared(run_batch, gather=10.0)
    answers: dict[str, tuple[str, float]] = {}
    threads = _a_then_b_and_c(shared, runs, gates, answers)
    threads.append(_submit(shared, "d", answers))
    _until(lambda: len(shared._pending) == 1)  # d waits for its turn
    gates["b"].set()
    time.sleep(0.2)  # d leads now, and waits for company (e coming first would do as well)
    came = time.monotonic()
    threads.append(_submit(shared, "e", answers))
    for thread in threads:
        thread.join(10)
    assert runs == [["a"], ["b", "c"], ["d", "e"]]
    assert {call: answer for call, (answer, _) in answers.items()} == {
        c: c.upper() for c in "abcde"
    }
    assert answers["d"][1] - came < 5  # not the 10 s window: the run started when e came


def test_a_run_whose_company_does_not_come_waits_the_window_then_runs_alone() -> None:
    """After a run of two, a call alone waits for one more until the window ends, then runs."""
    gates = {"a": threading.Event()}
    runs, run_batch = _recorded(gates)
    shared: _Shared[str, str] = _Shared(run_batch, gather=0.3)
    answers: dict[str, tuple[str, float]] = {}
    for thread in _a_then_b_and_c(shared, runs, gates, answers):
        thread.join(10)
    assert runs == [["a"], ["b", "c"]]
    started = time.monotonic()
    threads = [_submit(shared, "d", answers)]
    threads[0].join(10)
    assert runs == [["a"], ["b", "c"], ["d"]]
    assert answers["d"][1] - started >= 0.3
