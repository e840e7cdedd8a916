"""Hand freed heap memory back to the OS after a long request.

A 10^6-digit request briefly needs a few hundred MB (model tensors, strings, the response).
Freed, most of it stays in glibc's heaps, the worker thread's arena especially, and the
process would keep that resident for good; malloc_trim returns it. A no-op off glibc.
"""

import ctypes
import ctypes.util
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
try:
    _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim this way
    _trim = None


def release() -> None:
    """Give free heap pages of every malloc arena back to the OS."""
    if _trim is not None:
        _trim(0)
