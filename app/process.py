"""The process's tuning, in one place: glibc's allocator, the garbage collector, the GIL.

Keep the service's memory close to what it uses: glibc's allocator, tuned and trimmed.

A 10^6-digit request briefly needs a few hundred MB (model tensors, strings, the response).
glibc keeps freed memory for reuse: arrays under its mmap threshold stay in its heaps (and
the threshold grows each time a large block is freed, up to 32 MB), one heap per thread that
allocates, so the process would keep that memory resident for good. `tune` fixes the threshold
at 2 MB, so every larger array is its own mapping, returned to the OS when freed, and caps the
heaps at two. It also lets a heap keep 4 MB free at its top (glibc's default is 128 KB once the
threshold is fixed): a 1024 x 20-digit batch's arrays (1.4 MB at most) then reuse the pages the
last batch freed, where they faulted in fresh pages each time, a large share of the batch's
CPU (docs/benchmarks.md). `release` (malloc_trim) hands back what the heaps still hold: the
service calls it once a request of more than LARGE_DIGITS digits is answered. `heaps_kept`
lifts both thresholds while a model's certificate is checked: its walk allocates and frees
arrays of a few MB a batch of nodes, which would each fault in fresh pages. No-ops off glibc.
`settle` (once started), `serve` (before serving) and `collector_held` (while a large body is
read) set the garbage collector and the GIL switch interval; the reasons are beside them.
"""

import ctypes
import ctypes.util
import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 2 << 20
TRIM_THRESHOLD = 4 << 20
ARENAS = 2
# while a certificate is checked: every array of its walk from the heaps, freed pages kept
CHECK_MMAP_THRESHOLD = 32 << 20
CHECK_TRIM_THRESHOLD = 64 << 20
LARGE_DIGITS = 1 << 18  # a request of more digits is followed by release()
SWITCH_INTERVAL_S = 0.001  # the GIL switch interval: how long the loop may wait for a worker
GC_YOUNG_OBJECTS = 10_000  # the collector's first threshold while serving (Python's is 700)

_libc: Any = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _libc.malloc_trim.argtypes = [ctypes.c_size_t]
    _libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune this way
    _libc = None


def tune() -> None:
    """Fix the mmap and trim thresholds and cap the heaps; call at start, before threads
    allocate."""
    if _libc is not None:
        _libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        _libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        _libc.mallopt(_M_ARENA_MAX, ARENAS)


_checking = 0  # checks in progress (models may load in two threads at once)
_checking_lock = threading.Lock()


@contextmanager
def heaps_kept() -> Iterator[None]:
    """The heaps keep what they free while inside (a certificate's check at load: a tenth of
    its time went to faulting in pages, docs/benchmarks.md); after the last check, the serving
    thresholds of `tune` again, and the heaps trimmed."""
    global _checking
    if _libc is None:
        yield
        return
    with _checking_lock:
        _checking += 1
        if _checking == 1:
            _libc.mallopt(_M_MMAP_THRESHOLD, CHECK_MMAP_THRESHOLD)
            _libc.mallopt(_M_TRIM_THRESHOLD, CHECK_TRIM_THRESHOLD)
    try:
        yield
    finally:
        with _checking_lock:
            _checking -= 1
            if _checking == 0:
                _libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                _libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
                release()


def release() -> None:
    """Give free heap pages of every malloc arena back to the OS."""
    if _libc is not None:
        _libc.malloc_trim(0)


def settle() -> None:
    """Once start-up is done: its garbage collected, what survives frozen, memory handed back."""
    # Everything alive now (framework, models) lives as long as the process: keep it out of
    # the garbage collector's full passes, which otherwise stall requests for milliseconds.
    # The start-up's own garbage (probe sessions, schema builders) goes first.
    gc.collect()
    gc.freeze()
    release()  # the checks' arrays (tanh grid, warm-up, proof) go back to the OS


def serve() -> None:
    """The collector's threshold and the GIL switch interval while serving requests."""
    # A request makes no cyclic garbage (what it allocates is freed by reference counting),
    # but the objects of the requests in flight passed the default 700 new objects often: at
    # 64 connections the collector ran hundreds of times a second, scanning answers about to be
    # freed anyway (docs/benchmarks.md has the figures). At this threshold it did not run under
    # that load; real cycles, if any, still start a collection once GC_YOUNG_OBJECTS objects
    # are outstanding. (bench.hello is served the same way.)
    gc.set_threshold(GC_YOUNG_OBJECTS, 10, 10)
    # A worker thread building a large batch's answers holds the GIL; the event loop waits for
    # it at most this long each time (Python's default is 5 ms).
    sys.setswitchinterval(SWITCH_INTERVAL_S)


@contextmanager
def collector_held() -> Iterator[None]:
    """The garbage collector off while a large body's objects are built (none of them is
    garbage yet, and each collection would scan them all), back on as it was after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
