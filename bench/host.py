"""How much CPU the host took from this machine while a benchmark ran.

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
