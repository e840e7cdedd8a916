"""What reproduces where: train the same recipe under every kernel choice, compare the bytes.

Each cell trains the robust recipe (seed 0, a few epochs) in a fresh process, under one
ATEN_CPU_CAPABILITY (torch's vectorised kernels: default, avx2, avx512, as far as this CPU
has them), one MKL_CBWR (MKL's code path: unset = MKL's own dispatch, COMPATIBLE), one thread
count, and the training CLI's --kernels mode, then hashes the trained weights. Cells with the
same hash trained the same bytes. Emulating another CPU this way is what the project can do on
one machine: ATen's capability is what differs between AVX2 and AVX-512 processors, and MKL's
dispatch is what differs between Intel and AMD ones (MKL_CBWR=COMPATIBLE is Intel's documented
way to make it the same everywhere).

    python -m bench.reproducibility [--epochs 3] [--out docs/reproducibility.md]
"""

import argparse
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

# Runs in the child: pins (or not) as the CLI would, trains, prints the weights' hash.
CHILD = """
import hashlib, sys, time
from dataclasses import replace
from training import kernels
mode, threads, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
kernels.pin(mode)
from training.train import robust_recipe, train
recipe = replace(robust_recipe(seed=0), threads=threads, kernels=mode, max_epochs=epochs,
                 min_epochs=epochs)
began = time.perf_counter()
trained = train(recipe, progress=False)
digest = hashlib.sha256()
for value in trained.model.state_dict().values():
    digest.update(value.numpy().tobytes())
used = trained.kernels
print(digest.hexdigest()[:16], used.aten_capability, used.blas, time.perf_counter() - began)
"""


@dataclass(frozen=True)
class Cell:
    """One training run's settings and outcome."""

    mode: str
    capability: str  # as asked (ATEN_CPU_CAPABILITY), "" = torch's own choice
    cbwr: str  # as asked (MKL_CBWR), "" = unset
    threads: int
    digest: str
    used: str  # what torch reported using
    seconds: float


def capabilities() -> list[str]:
    """The ATEN_CPU_CAPABILITY values this CPU can run (avx512 only where it has it)."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    found = ["default"]
    if " avx2 " in flags:
        found.append("avx2")
    if " avx512f " in flags and " avx512bw " in flags:
        found.append("avx512")
    return found


def run(mode: str, capability: str, cbwr: str, threads: int, epochs: int) -> Cell:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    if capability:
        env["ATEN_CPU_CAPABILITY"] = capability
    if cbwr:
        env["MKL_CBWR"] = cbwr
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(threads), str(epochs)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    digest, aten, blas_name, blas_path, seconds = done.stdout.split()
    used = f"ATen {aten}, {blas_name} {blas_path}"
    return Cell(mode, capability, cbwr, threads, digest, used, float(seconds))


def table(cells: list[Cell], command: str) -> str:
    groups: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells:
        groups[cell.digest].append(cell)
    names = {digest: chr(ord("A") + i) for i, digest in enumerate(groups)}
    lines = [
        "# What reproduces where",
        "",
        f"Measured by `{command}` on {torch.__version__}, {os.cpu_count()} cores "
        f"({_cpu()}). Each row trains the robust recipe (seed 0) in a fresh process; rows "
        "with the same letter trained bit-identical weights.",
        "",
        "| --kernels | ATEN_CPU_CAPABILITY | MKL_CBWR | threads | torch used | weights | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        lines.append(
            f"| {cell.mode} | {cell.capability or '(unset)'} | {cell.cbwr or '(unset)'} "
            f"| {cell.threads} | {cell.used} | **{names[cell.digest]}** `{cell.digest}` "
            f"| {cell.seconds:.1f} |"
        )
    portable = {c.digest for c in cells if c.mode == "portable"}
    native = {c.digest for c in cells if c.mode == "native"}
    lines += [
        "",
        f"Portable kernels: {len(portable)} distinct result(s) over "
        f"{sum(c.mode == 'portable' for c in cells)} runs. Native kernels: {len(native)} "
        f"distinct results over {sum(c.mode == 'native' for c in cells)} runs.",
    ]
    return "\n".join(lines) + "\n"


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default: 3)")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    args = parser.parse_args()
    command = " ".join(["python -m bench.reproducibility", *sys.argv[1:]])
    cells: list[Cell] = []
    began = time.perf_counter()
    for mode in ("native", "portable"):
        for capability in capabilities():
            for cbwr in ("", "COMPATIBLE"):
                for threads in (1, 2):
                    cell = run(mode, capability, cbwr, threads, args.epochs)
                    print(cell, file=sys.stderr, flush=True)
                    cells.append(cell)
    text = table(cells, command)
    text += f"\nThe whole sweep took {time.perf_counter() - began:.0f} s.\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
