"""COUNTER_WORKERS: several worker processes serving one port, and the supervisor that keeps them.

The supervisor is the process `python -m app` started when more than one worker is asked for.
It loads no model and serves no request. It opens one listening socket per worker, all bound to
the same address with SO_REUSEPORT (so the kernel spreads new connections over them evenly, where
one shared socket lets whichever worker wakes first take a whole burst of connections), and starts
each worker as a fresh `python -m app` that serves the socket it inherits, with every guard and
the drain of app.http.server as in a single process. A worker that dies is restarted on the same
socket: connections the kernel queued on it meanwhile wait for it rather than being reset.

What the workers share lives in a temporary folder the supervisor owns and removes at exit:
- prometheus-client's multiprocess files (PROMETHEUS_MULTIPROC_DIR), so /metrics, answered by any
  one worker, counts every worker's requests once, a dead worker's included;
- one file per ready worker, so /readyz says 200 only when every worker is ready.

SIGTERM: the supervisor closes its copies of the sockets, passes the signal on, and exits once the
last worker has drained and exited. SIGINT (Ctrl-C) is passed on the same way.
"""

import ctypes
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from app.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import Gauge

log = logging.getLogger("app.workers")

# What a worker learns from the supervisor, by environment (never COUNTER_*: not settings).
ENV_FD = "RNN_COUNTER_LISTEN_FD"
ENV_DIR = "RNN_COUNTER_WORKER_DIR"
ENV_SLOT = "RNN_COUNTER_WORKER_SLOT"
ENV_COUNT = "RNN_COUNTER_WORKERS"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

BACKLOG = 256  # as app.http.server's own listener
POLL_SECONDS = 0.1
RESTART_DELAY_S = 0.5  # the first restart of a slot; doubled while it keeps dying young
RESTART_DELAY_MAX_S = 10.0
YOUNG_S = 10.0  # a worker that dies within this of its start is dying young
CANNOT_START = 2  # app.__main__'s exit status for bad settings or models: restarting won't help
_PR_SET_PDEATHSIG = 1


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The tightest cgroup v2 CPU quota (cpu.max) over this process's cgroup and its parents,
    in CPUs, or None without one."""
    try:
        line = next(
            entry
            for entry in Path("/proc/self/cgroup").read_text().splitlines()
            if entry.startswith("0::")
        )
    except (OSError, StopIteration):
        return None
    tightest: float | None = None
    folder = root / line[3:].strip().lstrip("/")
    while True:
        try:
            quota, period = (folder / "cpu.max").read_text().split()
            if quota != "max":
                cpus = int(quota) / int(period)
                tightest = cpus if tightest is None else min(tightest, cpus)
        except (OSError, ValueError):
            pass
        if folder == root or root not in folder.parents:
            return tightest
        folder = folder.parent


def available_cpus() -> int:
    """The CPUs this process may use: its affinity, capped by its cgroup quota (rounded down:
    a worker per fraction of a CPU would only be throttled), and at least one."""
    cpus = len(os.sched_getaffinity(0))
    quota = _cgroup_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def wanted(settings: Settings) -> int:
    """How many workers to run: COUNTER_WORKERS, or one per available CPU."""
    return settings.workers if settings.workers is not None else available_cpus()


# ---------------------------------------------------------------------------------------------
# The worker's side: its socket, and the readiness it shares with its siblings.


def is_worker() -> bool:
    """True in a worker the supervisor started (which never supervises in turn)."""
    return ENV_FD in os.environ


def inherited_socket() -> socket.socket | None:
    """The listening socket the supervisor opened for this worker (None outside a worker)."""
    fd = os.environ.get(ENV_FD)
    return socket.socket(fileno=int(fd)) if fd is not None else None


def sample_every_second(gauge: "Gauge", read: Callable[[], float]) -> None:
    """In a worker, a gauge's function is never read (/metrics reads the workers' files): a
    thread copies the function's value into this worker's file every second."""

    def copy() -> None:
        while True:
            gauge.set(read())
            time.sleep(1.0)

    threading.Thread(target=copy, name="gauge-sampler", daemon=True).start()


def _ready_file(folder: Path, slot: int) -> Path:
    return folder / "ready" / str(slot)


def mark_ready(ready: bool) -> None:
    """Tell the siblings this worker is (or no longer is) ready; nothing outside a worker."""
    folder, slot = os.environ.get(ENV_DIR), os.environ.get(ENV_SLOT)
    if folder is None or slot is None:
        return
    path = _ready_file(Path(folder), int(slot))
    if ready:
        path.write_text(str(os.getpid()))
    else:
        path.unlink(missing_ok=True)


def siblings_ready() -> bool:
    """Whether every worker of this server is ready (True outside a worker: no siblings)."""
    folder = os.environ.get(ENV_DIR)
    if folder is None:
        return True
    count = int(os.environ[ENV_COUNT])
    return all(_ready_file(Path(folder), slot).exists() for slot in range(count))


# ---------------------------------------------------------------------------------------------
# The supervisor's side.


def _listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on host:port with SO_REUSEPORT (port 0: the first one's)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sockets: list[socket.socket] = []
    for _ in range(count):
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address if not sockets else sockets[0].getsockname())
        sock.listen(BACKLOG)
        sockets.append(sock)
    return sockets


def _memory_folder() -> str | None:
    """/dev/shm when it is writable, else the temporary folder. Every request writes the
    metrics' files through a shared mapping; on a disk's filesystem the kernel writes those
    pages back, and a write to a page under writeback waits for it (on ext4 here one worker's
    req/s fell to 0.5-0.7x; the machine was too busy to say how much of that was this)."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


def _die_with_parent() -> None:
    """In the worker, before exec: SIGTERM it if the supervisor dies (even by SIGKILL), so no
    worker outlives it holding the port."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Slot:
    """One worker's place: its socket, its current process, and its restart history."""

    index: int
    sock: socket.socket
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = RESTART_DELAY_S
    restart_at: float | None = None
    signalled: bool = False  # the stop was passed on to its current process


class Supervisor:
    """Starts the workers, restarts the ones that die, and passes a stop on to them."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.count = count
        # A worker's own stop takes at most its drain, then its longest request, then a second.
        self.stop_within = settings.drain_seconds + settings.max_run_seconds + 5
        self.stop_deadline = 0.0
        self.folder = Path(tempfile.mkdtemp(prefix="rnn-counter-workers-", dir=_memory_folder()))
        (self.folder / "metrics").mkdir()
        (self.folder / "ready").mkdir()
        sockets = _listeners(settings.host, settings.port, count)
        # the address as bound, kept: a stop closes the sockets, and may come at any moment
        self.host: str = sockets[0].getsockname()[0]
        self.port: int = sockets[0].getsockname()[1]
        self.slots = [_Slot(i, sock) for i, sock in enumerate(sockets)]
        self.stopping: int | None = None  # the signal being passed on, once one came

    def _start_first(self) -> int | None:
        """Start worker 0 alone and wait until it is ready: None, or its exit status when it
        could not start. Nothing is logged before, so a model or setting the service refuses
        stops the start with the worker's own one line, as a single process does."""
        first = self.slots[0]
        self._start(first, announce=False)
        ready = _ready_file(self.folder, first.index)
        while not ready.exists() and self.stopping is None:
            assert first.process is not None
            status = first.process.poll()
            if status is not None:
                return status
            time.sleep(POLL_SECONDS)
        return None

    def _start(self, slot: _Slot, announce: bool = True) -> None:
        env = {
            **os.environ,
            ENV_FD: str(slot.sock.fileno()),
            ENV_DIR: str(self.folder),
            ENV_SLOT: str(slot.index),
            ENV_COUNT: str(self.count),
            MULTIPROC_ENV: str(self.folder / "metrics"),
        }
        slot.signalled = False
        slot.process = subprocess.Popen(
            [sys.executable, "-m", "app"],
            env=env,
            pass_fds=(slot.sock.fileno(),),
            # Its own process group: a Ctrl-C in a terminal reaches the supervisor only, which
            # passes it on once (a second SIGINT would make uvicorn skip its graceful stop).
            process_group=0,
            preexec_fn=_die_with_parent,
        )
        if slot.restart_at is not None:  # a restart: the next one, if it dies young, waits more
            slot.delay = min(slot.delay * 2, RESTART_DELAY_MAX_S)
        slot.started, slot.restart_at = time.monotonic(), None
        if announce:
            log.info("worker %d started (pid %d)", slot.index, slot.process.pid)
        if self.stopping is not None and not slot.signalled:
            # The stop came while this worker was being started, before _stop could see it.
            slot.process.send_signal(self.stopping)
            slot.signalled = True

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping is not None:
            return
        self.stopping = signum
        self.stop_deadline = time.monotonic() + self.stop_within
        # Close our copies of the listening sockets first: once every worker has closed its
        # own in its drain, new connections are refused rather than queued for nobody.
        for slot in self.slots:
            slot.sock.close()
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signum)
                slot.signalled = True

    def _reap(self, slot: _Slot) -> int | None:
        """The slot's worker's exit status if it has exited since the last look, else None."""
        if slot.process is None or slot.process.poll() is None:
            return None
        status, pid = slot.process.returncode, slot.process.pid
        slot.process = None
        _ready_file(self.folder, slot.index).unlink(missing_ok=True)
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(self.folder / "metrics"))  # type: ignore[no-untyped-call]
        if self.stopping is None and status != CANNOT_START:
            how = f"signal {-status}" if status < 0 else f"status {status}"
            if time.monotonic() - slot.started >= YOUNG_S:
                slot.delay = RESTART_DELAY_S  # it had served a while: restart it promptly
            slot.restart_at = time.monotonic() + slot.delay
            log.warning(
                "worker %d (pid %d) exited with %s; restarting it in %g s",
                slot.index,
                pid,
                how,
                slot.delay,
            )
        return status

    def run(self) -> int:
        """Serve until stopped; the exit status: 0 after a clean stop of every worker."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        worst = 0
        announced = False
        try:
            failed = self._start_first()
            if failed is not None:
                return failed if failed == CANNOT_START else 1
            announced = True
            log.info("serving on %s port %d with %d workers", self.host, self.port, self.count)
            first = self.slots[0].process
            if first is not None:
                log.info("worker 0 started (pid %d)", first.pid)
            for slot in self.slots[1:]:
                if self.stopping is None:  # a stop while worker 0 started: start no more
                    self._start(slot)
            while any(slot.process is not None for slot in self.slots) or self.stopping is None:
                for slot in self.slots:
                    status = self._reap(slot)
                    if status == CANNOT_START and self.stopping is None:
                        log.error("worker %d cannot start; stopping", slot.index)
                        self._stop(signal.SIGTERM, None)
                        worst = CANNOT_START
                    elif status is not None and self.stopping is not None:
                        worst = worst or (0 if status in (0, -signal.SIGTERM) else 1)
                    due = slot.restart_at is not None and time.monotonic() >= slot.restart_at
                    if self.stopping is None and slot.process is None and due:
                        self._start(slot)
                if self.stopping is not None and time.monotonic() > self.stop_deadline:
                    log.error("workers still running %g s after the stop: killed", self.stop_within)
                    return 1
                time.sleep(POLL_SECONDS)
            return worst
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for slot in self.slots:
                if slot.process is not None:
                    slot.process.kill()
                    slot.process.wait()
                slot.sock.close()
            shutil.rmtree(self.folder, ignore_errors=True)
            if announced:
                log.info("every worker has exited")


def supervise(settings: Settings, count: int) -> int:
    """Run `count` workers on settings.host:port until SIGTERM or Ctrl-C; the exit status."""
    return Supervisor(settings, count).run()
