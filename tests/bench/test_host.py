"""The stolen-CPU line benchmarks print: the share of all CPU time since start that was steal."""

import pytest

from bench import host


def test_steal_is_the_stolen_share_of_all_cpu_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # user nice system idle iowait irq softirq steal, in ticks
    readings = iter([[100, 0, 50, 800, 0, 0, 0, 50], [400, 0, 150, 1100, 0, 0, 0, 150]])
    monkeypatch.setattr(host, "_cpu_times", lambda: next(readings))
    steal = host.Steal.start()
    assert steal.percent() == pytest.approx(100.0 * 100 / 800)  # 100 stolen of 800 ticks
    monkeypatch.setattr(host, "_cpu_times", lambda: [100, 0, 50, 800, 0, 0, 0, 50])
    assert "busy host" not in steal.sentence()  # nothing passed, nothing stolen


def test_a_busy_host_is_named_as_one(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter([[0] * 8, [90, 0, 0, 0, 0, 0, 0, 10]])
    monkeypatch.setattr(host, "_cpu_times", lambda: next(readings))
    sentence = host.Steal.start().sentence()
    assert "10.0%" in sentence
    assert "busy host" in sentence


def test_this_machine_reports_a_share_between_0_and_100() -> None:
    share = host.Steal.start().percent()
    assert share is None or 0.0 <= share <= 100.0
