"""The decided-seeds page states the goal (at least 9 seeds in 10 decided, each within a
minute of search) and whether the run met it, from the seeds' decisions; a seed's search that
outlasts its time is stopped, with the workers its walks started."""

import multiprocessing
import platform
import threading
import time
from pathlib import Path

import pytest

from core.card import Decision, Refutation
from training import decided_seeds, walk_pool
from training.decided_seeds import goal
from training.kernels import numpy_simd


def _decision(proved: int | str, refuted_at: int | None, seconds: float) -> Decision:
    refutation = (
        None
        if refuted_at is None
        else Refutation(nines=refuted_at, example="9" * refuted_at, expected="1", got="0")
    )
    return Decision.model_validate(
        {
            "method": "walked",
            "proved_carry_length": proved,
            "refutation": refutation,
            "certificate_file": None,
            "certificate_sha256": None,
            "key_digits": 2,
            "tanh_error_bound": 1e-5,
            "margin": None,
            "search_seconds": seconds,
            "reason": "test",
        }
    )


def test_nine_exact_or_unbounded_decisions_within_a_minute_meet_the_goal() -> None:
    decisions: list[Decision | None] = [_decision(4, 5, 10.0)] * 8
    decisions += [_decision("unbounded", None, 59.0), None]
    assert goal(decisions) == (
        "Goal: at least 9/10 decided, each within 60 s of search: 9/10, met."
    )


def test_a_range_a_slow_decision_or_a_stopped_search_does_not_count() -> None:
    exact = [_decision(4, 5, 10.0)] * 7
    between = _decision(-1, 5, 10.0)  # proved -1, refuted at 5: K lies between
    slow = _decision(17, 18, 61.0)
    assert goal([*exact, between, slow, None]) == (
        "Goal: at least 9/10 decided, each within 60 s of search: 7/10, not met."
    )


def _gone(pid: int) -> bool:
    """No such process, or one that has exited and waits to be reaped."""
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "\nState:\tZ" in status.read_text()


def test_a_search_past_its_time_stops_with_its_walks_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def endless(model: Path, walk: bool) -> str:
        worker = walk_pool._executor(2).submit(time.sleep, 60)  # as a pooled walk starts them
        workers = [str(p.pid) for p in multiprocessing.active_children()]
        (tmp_path / "pids").write_text(" ".join(workers))
        worker.result()
        return "never"

    monkeypatch.setattr(decided_seeds, "decide_file", endless)
    started = time.monotonic()
    assert decided_seeds._decide(tmp_path / "model", walk=True, seconds=2.0) is None
    assert time.monotonic() - started < 10
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert pids
    deadline = time.monotonic() + 5
    while not all(map(_gone, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(map(_gone, pids)), pids


def test_a_search_that_walked_on_every_core_ends_when_it_is_done(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Its child process exits with its workers stopped, not waiting on them."""

    def pooled(model: Path, walk: bool) -> str:
        assert walk_pool._executor(2).submit(sum, [1, 2]).result() == 3  # workers started
        return f"{model.name}: decided"

    monkeypatch.setattr(decided_seeds, "decide_file", pooled)
    lines: list[str | None] = []
    search = threading.Thread(
        target=lambda: lines.append(decided_seeds._decide(tmp_path / "m", True, 30.0)),
        daemon=True,
    )
    search.start()
    search.join(60)
    assert lines == ["m: decided"]


def test_a_search_within_its_time_gives_its_line_and_a_failed_one_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(decided_seeds, "decide_file", lambda model, walk: f"{model.name}: K = 3")
    assert decided_seeds._decide(tmp_path / "m", walk=True, seconds=30.0) == "m: K = 3"

    def broken(model: Path, walk: bool) -> str:
        raise ValueError("no such model")

    monkeypatch.setattr(decided_seeds, "decide_file", broken)
    with pytest.raises(RuntimeError, match=r"deciding .*m failed"):
        decided_seeds._decide(tmp_path / "m", walk=True, seconds=30.0)


def test_the_section_names_the_machine_its_seconds_were_measured_on() -> None:
    """Search speeds differ by CPU (numpy's SIMD above all): the page says which one ran."""
    text = decided_seeds.section(1, "python -m training decide-seeds --seeds 1")
    assert f"this machine ({platform.machine()}, numpy SIMD {numpy_simd()}" in text
    assert "| 0 | -1 |" in text  # seed 0 trained and decided: refuted at once
