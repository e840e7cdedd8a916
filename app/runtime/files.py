"""Reading the models folder safely: regular files only, never more than a cap.

A FIFO named `*.json` would block `read()` forever, and a card symlinked to /dev/zero would
be read until memory runs out. So a file is opened without blocking, checked on the open
descriptor (the same file that is read, whatever replaced the name since), and read only if
it is a regular file no larger than the cap.
"""

import os
import stat
from pathlib import Path


class UnreadableFileError(OSError):
    """A file the models folder must not read: its reason in plain words."""


def read_capped(path: Path, cap: int, setting: str) -> bytes:
    """The bytes of a regular file of at most `cap` bytes; UnreadableFileError otherwise."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnreadableFileError(f"cannot open it: {exc.strerror}") from None
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFileError(f"not a regular file ({_kind(info.st_mode)}); skipped")
        if info.st_size > cap:
            raise UnreadableFileError(
                f"{info.st_size} bytes, more than the limit of {cap} ({setting})"
            )
        data = file.read(cap + 1)
    if len(data) > cap:  # it grew while being read
        raise UnreadableFileError(f"more than the limit of {cap} bytes ({setting})")
    return data


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"
