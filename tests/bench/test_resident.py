"""bench.http's memory line: resident memory split into what the process allocated itself
(anonymous) and library pages mapped from the page cache (file-backed)."""

import os
import subprocess
import sys

from bench.host import resident


def test_memory_a_process_writes_is_counted_as_anonymous_not_file() -> None:
    # A child that maps 64 MB, writes every page, and waits to be read.
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import mmap, sys; m = mmap.mmap(-1, 64 << 20, flags=mmap.MAP_PRIVATE);"
            " m.write(b'x' * (64 << 20)); print(flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as child:  # closes its pipes on the way out
        try:
            assert child.stdout is not None
            child.stdout.readline()  # the pages are written
            reading = resident(child.pid)
        finally:
            child.kill()
    before = resident(os.getpid())  # this interpreter: its code is mapped from files
    assert reading.anonymous >= 64
    assert reading.file < reading.anonymous
    assert reading.total >= reading.anonymous + reading.file - 1  # plus shared memory, if any
    assert f"{reading.anonymous:.0f} anonymous" in str(reading)
    assert before.file > 0  # the interpreter's own code is file-backed
