"""Which CPU kernels training runs on, and pinning them so a retrain is bit-identical anywhere.

torch picks kernels by processor: its own vectorised ATen kernels (tanh, softmax, Adam's
updates) by the CPU capability (DEFAULT, AVX2, AVX512), and MKL's sgemm under every matmul by
its own dispatch, which on an AVX-512 Intel processor differs from an AMD one's. Each choice
changes the last bits of a training step, and 30 epochs turn last bits into different weights
(docs/reproducibility.md has the measurements).

'portable' pins both: ATen's DEFAULT kernels (plain C++, the same instructions on every
x86-64) and MKL's conditional numerical reproducibility mode COMPATIBLE (MKL_CBWR), which Intel
documents as giving the same results on every x86-64 processor for a fixed thread count. They
are read from the environment when torch first needs them, so `pin` must run before any torch
operation; the training CLI calls it first thing. 'native' leaves torch's own choice: faster,
and reproducible only on the same processor.
"""

import ctypes
import os
import platform
from typing import Literal

import torch

from core.card import Kernels

Mode = Literal["portable", "native"]
PORTABLE = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}
# MKL's branch codes (mkl_cbwr.h), for reporting what mkl_cbwr_get says.
_MKL_BRANCHES = {
    1: "AUTO",  # MKL_CBWR_BRANCH_OFF: nothing set, MKL dispatches by processor
    2: "AUTO",
    3: "COMPATIBLE",
    4: "SSE2",
    6: "SSSE3",
    7: "SSE4_1",
    8: "SSE4_2",
    9: "AVX",
    10: "AVX2",
    11: "AVX512_MIC",
    12: "AVX512",
    13: "AVX512_MIC_E1",
    14: "AVX512_E1",
}


class KernelPinError(RuntimeError):
    """Portable kernels were asked for after torch had already chosen its own."""


def pin(mode: Mode) -> None:
    """Set the environment for `mode` before torch runs anything ('native': leave it)."""
    if mode == "portable":
        os.environ.update(PORTABLE)


def _mkl_branch() -> str | None:
    """MKL's code path as MKL itself reports it, or None when torch has no MKL."""

    library = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        get = ctypes.CDLL(library).mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return None
    get.restype = ctypes.c_int
    return _MKL_BRANCHES.get(get(ctypes.c_int(1)), "unknown")  # 1: MKL_CBWR_BRANCH


def describe(mode: Mode, threads: int) -> Kernels:
    """The kernels torch is using now; raises KernelPinError if 'portable' did not take."""
    capability = torch.backends.cpu.get_cpu_capability()
    branch = _mkl_branch()
    has_mkl: bool = torch.backends.mkl.is_available()  # type: ignore[no-untyped-call]
    blas = f"mkl {branch or 'AUTO'}" if has_mkl else "not MKL (the build's own BLAS)"
    if mode == "portable" and (capability != "DEFAULT" or branch not in (None, "COMPATIBLE")):
        raise KernelPinError(
            f"portable kernels asked for, but torch runs ATen {capability} and {blas}: "
            "training.kernels.pin('portable') must run before torch does anything"
        )
    return Kernels(
        mode=mode,
        aten_capability=capability,
        blas=blas,
        machine=platform.machine(),
        threads=threads,
    )
