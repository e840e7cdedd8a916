"""Readings of the machine a benchmark prints beside its figures: how much CPU the host took
from it while the benchmark ran, and a process's resident memory in its two parts.

On a virtual machine, /proc/stat's `steal` is time a vCPU was ready to run and the hypervisor
ran something else. It moves throughput and tail latency without any change in the code, so
a benchmark prints it beside its figures: a few percent or more means a busy host, and its
absolute numbers are not comparable with a quiet run (its side-by-side ratios still are).
"""

from dataclasses import dataclass
from pathlib import Path


def _cpu_times() -> list[int]:
    """The aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    return [int(field) for field in first[1:9]]


@dataclass
class Steal:
    """Stolen CPU since start(): `Steal.start()` ... `.percent()`."""

    before: list[int]

    @classmethod
    def start(cls) -> "Steal":
        return cls(_cpu_times() if Path("/proc/stat").exists() else [])

    def percent(self) -> float | None:
        """Stolen time as a percentage of all CPU time since start (None off Linux)."""
        if not self.before:
            return None
        delta = [now - then for now, then in zip(_cpu_times(), self.before, strict=True)]
        total = sum(delta)
        return 100.0 * delta[7] / total if total else 0.0

    def sentence(self) -> str:
        share = self.percent()
        if share is None:
            return "CPU stolen by the host: not known here (no /proc/stat)"
        quiet = "a quiet host" if share < 1 else "a busy host: absolute figures are not comparable"
        return f"CPU stolen by the host during the runs: {share:.1f}% ({quiet})"


@dataclass(frozen=True)
class Resident:
    """A process's resident memory, MB, and its two parts: anonymous (what the process
    allocated itself) and file-backed (pages of its libraries mapped from the page cache). The
    file-backed part moves with how the kernel cached those files, not with the code: on Linux
    6.18 the same server read 108 MB ready just after `make test` had installed onnxruntime, and
    100 MB once `echo 3 > /proc/sys/vm/drop_caches` had emptied the page cache (measured); its
    anonymous part was 54 MB both times.
    """

    total: float
    anonymous: float
    file: float

    def __str__(self) -> str:
        return f"{self.total:.0f} MB ({self.anonymous:.0f} anonymous + {self.file:.0f} file)"


def resident(pid: int) -> Resident:
    fields = {
        name: int(value.split()[0]) / 1024
        for name, value in (
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        if name in ("VmRSS", "RssAnon", "RssFile")
    }
    return Resident(fields["VmRSS"], fields["RssAnon"], fields["RssFile"])
