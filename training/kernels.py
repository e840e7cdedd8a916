"""Which CPU kernels training runs on, and pinning them so a retrain is bit-identical anywhere.

Libraries pick kernels by processor, and each choice changes the last bits of a training step,
which epochs turn into other weights. What training goes through, and how 'portable' pins it:

- ATen's vectorised kernels (tanh, softmax, the optimizers' fused steps) by the CPU capability
  (DEFAULT, AVX2, AVX512): pinned to DEFAULT, plain C++ that is the same instructions on
  every x86-64.
- MKL's sgemm under every matmul, and its vector math (VML: torch's tanh, exp, sqrt on float
  tensors): pinned with MKL_CBWR=COMPATIBLE. That holds for sgemm and tanh, but not for VML's
  sqrt: on an Intel Xeon and an AMD EPYC, both COMPATIBLE, `x.sqrt()` differs in the last bit
  (shared/tools/kernel_fingerprint.py; a profile shows mkl_vml_kernel_sSqrt). Training's only
  square roots were the optimizers' (Adam's and Adagrad's denominators), so training.train
  asks for their fused kernels, which take the square root in ATen's own code instead.
- oneDNN (torch's LSTM layer, mkldnn_rnn_layer): it generates code for the CPU at run time,
  so 'portable' turns it off and torch falls back to ATen's cell and MKL's sgemm.
- numpy's SIMD dispatch (np.tanh in the proof's float64 bounds): it moves the bounds in their
  last bits, which the proof's error allowance and the card's rounding absorb; it is recorded.

These are read when torch first needs them, so `pin` must run before any torch operation; the
training CLI calls it first thing. 'native' leaves every library its own choice: faster, and
reproducible only on the same processor. The measurements are in docs/reproducibility.md.
"""

import ctypes
import os
import platform
from typing import Literal

import numpy as np
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
# Every knob by which a library on the training path chooses its kernels, as one process can
# set it alone to stand in for another CPU (tests/training/test_retrain.py, bench.reproducibility).
EMULATED_CPUS: dict[str, dict[str, str]] = {
    "as found": {},
    "ATen AVX2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "MKL AVX-512 path asked for": {"MKL_CBWR": "AVX512"},
    "MKL capped at SSE4.2": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "oneDNN capped at SSE4.1": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "numpy without AVX2": {"NPY_DISABLE_CPU_FEATURES": "X86_V3"},
}


class KernelPinError(RuntimeError):
    """Portable kernels were asked for after torch had already chosen its own."""


def pin(mode: Mode) -> None:
    """Set the environment for `mode` before torch runs anything ('native': leave it)."""
    if mode == "portable":
        os.environ.update(PORTABLE)
        torch.backends.mkldnn.set_flags(False)  # type: ignore[no-untyped-call]


def _mkl_branch() -> str | None:
    """MKL's code path as MKL itself reports it, or None when torch has no MKL."""

    library = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        get = ctypes.CDLL(library).mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return None
    get.restype = ctypes.c_int
    return _MKL_BRANCHES.get(get(ctypes.c_int(1)), "unknown")  # 1: MKL_CBWR_BRANCH


def _onednn() -> str:
    if not torch.backends.mkldnn.enabled:
        return "off"
    return f"on (ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')})"


def numpy_simd() -> str:
    """The SIMD groups numpy dispatches to here, e.g. 'X86_V2 X86_V3' (baseline first)."""
    simd = np.show_config(mode="dicts")["SIMD Extensions"]
    return " ".join([*simd["baseline"], *simd.get("found", [])])


def describe(mode: Mode, threads: int) -> Kernels:
    """The kernels torch is using now; raises KernelPinError if 'portable' did not take."""
    capability = torch.backends.cpu.get_cpu_capability()
    branch = _mkl_branch()
    has_mkl: bool = torch.backends.mkl.is_available()  # type: ignore[no-untyped-call]
    blas = f"mkl {branch or 'AUTO'}" if has_mkl else "not MKL (the build's own BLAS)"
    onednn = _onednn()
    if mode == "portable" and (
        capability != "DEFAULT" or branch not in (None, "COMPATIBLE") or onednn != "off"
    ):
        raise KernelPinError(
            f"portable kernels asked for, but torch runs ATen {capability}, {blas} and oneDNN "
            f"{onednn}: training.kernels.pin('portable') must run before torch does anything"
        )
    return Kernels(
        mode=mode,
        aten_capability=capability,
        blas=blas,
        machine=platform.machine(),
        threads=threads,
        onednn=onednn,
        numpy_simd=numpy_simd(),
    )
