"""What reproduces where: train under every emulated CPU, with portable and native kernels.

Each cell trains one model (the robust recipe's RNN for a few epochs, and its LSTM for one:
the LSTM is the one cell torch runs through oneDNN) in a fresh process, with one knob of
training.kernels.EMULATED_CPUS set alone: ATen's capability, MKL's code path or its
instruction cap, oneDNN's ISA cap, numpy's SIMD dispatch. That is how one machine can stand in
for another CPU. Cells with the same letter trained bit-identical weights. A real second CPU
says more (shared/tools/kernel_fingerprint.py compares kernels line by line); this sweep is
what the project can re-run alone.

    python -m bench.reproducibility [--epochs 3] [--out docs/reproducibility.md]
"""

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from training.kernels import EMULATED_CPUS

# Runs in the child: pins (or not) as the CLI would, trains, prints the weights' hash.
CHILD = """
import hashlib, sys, time
from dataclasses import replace
from training import kernels
mode, name, cell, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
kernels.pin(mode)
from training.train import RECIPES, train
recipe = replace(RECIPES[name](cell=cell, seed=0), kernels=mode, max_epochs=epochs,
                 min_epochs=epochs)
began = time.perf_counter()
trained = train(recipe, progress=False)
digest = hashlib.sha256()
for value in trained.model.state_dict().values():
    digest.update(value.numpy().tobytes())
print(digest.hexdigest()[:16], time.perf_counter() - began)
"""
MODELS = {"rnn": 1, "lstm": 1 / 3}  # epochs per run, as a share of --epochs (at least 1)

# What a second CPU showed, kept with the page the sweep writes (the sweep cannot measure it).
VENDORS = """
## Intel against AMD: the kernel that differed

Measured with `shared/tools/kernel_fingerprint.py portable` (a sha256 prefix of each training
primitive's result, inputs made without any CPU kernel) on an Intel Xeon (AVX-512, AMX) and on
an AMD EPYC (Zen 2, AVX2), both torch 2.13.0+cpu, ATen DEFAULT, MKL_CBWR=COMPATIBLE, 1 thread.
Every line agreed (matmuls, addmm and their backward at the training's shapes, tanh, exp,
sigmoid, softmax, log_softmax, reductions, cross-entropy and its gradient, torch's random
kernels, the RNN's forward and backward) except three:

| kernel | Intel Xeon | AMD EPYC |
|---|---|---|
| `x.abs().sqrt()` | `39e082b3131548f2` | `57b5015d8824e67e` |
| 5 Adagrad steps | `9f0be08b9f5f75b9` | `f8d75fd603af762a` |
| 5 Adam steps | `084382429aaac9ca` | `48f0bbfaf9cb2fdf` |

torch's float `sqrt` runs MKL's vector math (`perf record` of a sqrt loop:
`mkl_vml_kernel_sSqrt_EXHAynn`); on the AMD machine it is off by one ulp from the correctly
rounded root on 17% of inputs, and `MKL_CBWR=COMPATIBLE` does not make it agree with Intel's.
Adam's and Adagrad's default (foreach) steps take their denominators' square roots there, so
every step differed. Training now uses the optimizers' fused steps (ATen's own kernel: under
the DEFAULT capability, plain IEEE arithmetic, correctly rounded square roots), and a test
(tests/training/test_kernels.py) records every ATen op of a training step and refuses `sqrt`,
`_foreach_sqrt`, `rsqrt` and oneDNN's RNN layer on the path. Capping oneDNN
(`ONEDNN_MAX_CPU_ISA`), MKL (`MKL_ENABLE_INSTRUCTIONS`) or numpy (`NPY_DISABLE_CPU_FEATURES`)
changed no trained byte on the Intel machine; the sweep above checks each knob here.
"""


@dataclass(frozen=True)
class Cell:
    """One training run's settings and outcome."""

    mode: str
    cell: str
    knob: str
    digest: str
    seconds: float


def run(mode: str, cell: str, knob: str, epochs: int, recipe: str = "robust") -> Cell:
    """Train `recipe` with `cell` for `epochs` in a fresh process with one knob set."""
    env = {k: v for k, v in os.environ.items() if all(k not in e for e in EMULATED_CPUS.values())}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, recipe, cell, str(epochs)],
        env={**env, **EMULATED_CPUS[knob]},
        capture_output=True,
        text=True,
        check=True,
    )
    digest, seconds = done.stdout.split()
    return Cell(mode, cell, knob, digest, float(seconds))


def table(cells: list[Cell], command: str) -> str:
    columns = sorted({(c.mode, c.cell) for c in cells}, key=lambda m: (m[0] != "portable", m[1]))
    letters: dict[str, str] = {}
    for each in cells:
        letters.setdefault(each.digest, chr(ord("A") + len(letters)))
    by = {(c.mode, c.cell, c.knob): c for c in cells}
    lines = [
        "# What reproduces where",
        "",
        f"Measured by `{command}` with torch {torch.__version__} on {_cpu()}. Each cell trains "
        "the robust recipe (seed 0) in a fresh process with one knob set; cells with the same "
        "letter trained bit-identical weights (seconds in brackets).",
        "",
        "| knob | " + " | ".join(f"{mode} {model}" for mode, model in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for knob, env in EMULATED_CPUS.items():
        setting = ", ".join(f"`{k}={v}`" for k, v in env.items()) or "(none)"
        row = [f"{knob}: {setting}"]
        for mode, model in columns:
            found = by[(mode, model, knob)]
            row.append(f"**{letters[found.digest]}** ({found.seconds:.1f})")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    for mode, cell in columns:
        digests = {c.digest for c in cells if (c.mode, c.cell) == (mode, cell)}
        lines.append(
            f"- {mode} {cell}: {len(digests)} distinct result(s) over {len(EMULATED_CPUS)} knobs."
        )
    return "\n".join(lines) + "\n"


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "an unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3, help="RNN epochs per run (default: 3)")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    args = parser.parse_args()
    command = " ".join(["python -m bench.reproducibility", *sys.argv[1:]])
    cells: list[Cell] = []
    began = time.perf_counter()
    for mode in ("portable", "native"):
        for cell, share in MODELS.items():
            for knob in EMULATED_CPUS:
                found = run(mode, cell, knob, max(1, round(args.epochs * share)))
                print(found, file=sys.stderr, flush=True)
                cells.append(found)
    text = table(cells, command)
    text += f"\nThe whole sweep took {time.perf_counter() - began:.0f} s.\n" + VENDORS
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
