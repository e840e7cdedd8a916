"""app.process.heaps_kept: two models checked at once (the repository loads in threads) keep
the heaps until the last check ends; the serving thresholds come back once, then the heaps are
trimmed."""

import pytest

from app import process


class FakeLibc:
    """Records the allocator calls (glibc's mallopt and malloc_trim)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def mallopt(self, parameter: int, value: int) -> None:
        self.calls.append(("mallopt", parameter, value))

    def malloc_trim(self, pad: int) -> None:
        self.calls.append(("malloc_trim", pad, 0))


def test_overlapping_checks_keep_the_heaps_until_the_last_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    libc = FakeLibc()
    monkeypatch.setattr(process, "_libc", libc)
    kept = [
        ("mallopt", process._M_MMAP_THRESHOLD, process.CHECK_MMAP_THRESHOLD),
        ("mallopt", process._M_TRIM_THRESHOLD, process.CHECK_TRIM_THRESHOLD),
    ]
    serving = [
        ("mallopt", process._M_MMAP_THRESHOLD, process.MMAP_THRESHOLD),
        ("mallopt", process._M_TRIM_THRESHOLD, process.TRIM_THRESHOLD),
        ("malloc_trim", 0, 0),
    ]
    with process.heaps_kept():
        with process.heaps_kept():
            assert libc.calls == kept
        assert libc.calls == kept  # the first check still runs
    assert libc.calls == kept + serving
    with pytest.raises(RuntimeError), process.heaps_kept():  # a check that fails
        raise RuntimeError("refused")
    assert libc.calls == (kept + serving) * 2
