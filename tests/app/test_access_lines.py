"""The access log's writer: a loop turn's lines go out in one write, whole and in order, and
none is left behind when a loop stops with a write still due."""

import asyncio
import os

import pytest

from app.http.access_log import Lines


class Pipe:
    """A pipe whose writes are counted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.read_end, self.write_end = os.pipe()
        self.writes = 0
        real_write = os.write

        def counted(fd: int, data: bytes | memoryview) -> int:
            if fd == self.write_end:
                self.writes += 1
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", counted)

    def text(self) -> bytes:
        os.close(self.write_end)
        with os.fdopen(self.read_end, "rb") as reader:
            return reader.read()


def test_one_turns_lines_are_one_write_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = Pipe(monkeypatch)
    lines = Lines(pipe.write_end)

    async def answer_three_then_one() -> None:
        for line in (b"a\n", b"b\n", b"c\n"):
            lines.add(line)
        assert pipe.writes == 0  # held until the loop turns
        await asyncio.sleep(0)
        lines.add(b"d\n")
        await asyncio.sleep(0)

    asyncio.run(answer_three_then_one())
    assert pipe.writes == 2
    assert pipe.text() == b"a\nb\nc\nd\n"


def test_a_line_held_when_its_loop_stopped_goes_out_with_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipe = Pipe(monkeypatch)
    lines = Lines(pipe.write_end)
    loop = asyncio.new_event_loop()

    def add_and_stop() -> None:
        lines.add(b"first\n")
        loop.stop()  # the loop stops before the turn in which the write was due

    loop.call_soon(add_and_stop)
    loop.run_forever()
    loop.close()
    assert pipe.writes == 0

    async def next_request() -> None:
        lines.add(b"second\n")
        await asyncio.sleep(0)

    asyncio.run(next_request())
    assert pipe.text() == b"first\nsecond\n"


def test_without_a_running_loop_a_line_is_written_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipe = Pipe(monkeypatch)
    lines = Lines(pipe.write_end)
    lines.add(b"now\n")
    assert pipe.writes == 1
    assert pipe.text() == b"now\n"


def test_a_line_written_now_takes_the_held_ones_with_it_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request answered alone writes at once (no loop turn's wait), after what is held."""
    pipe = Pipe(monkeypatch)
    lines = Lines(pipe.write_end)

    async def two_then_one_alone() -> None:
        lines.add(b"held 1\n")
        lines.add(b"held 2\n")
        lines.add(b"alone\n", now=True)
        assert pipe.writes == 1  # before the loop turns
        await asyncio.sleep(0)  # the turn's due write finds nothing left

    asyncio.run(two_then_one_alone())
    assert pipe.writes == 1
    assert pipe.text() == b"held 1\nheld 2\nalone\n"
