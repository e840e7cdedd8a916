"""Every float32 value through onnxruntime's RNN kernel tanh: its largest error, exhaustively.

The certificate allows each deployed tanh an absolute error (the card's
certificate.tanh_error_bound, 1e-5); the service checks a dense grid at every start
(core.activation). This runs all 2^32 float32 bit patterns but NaN and infinity, in chunks,
against float64 tanh, and prints the largest error, where it is, and the room it leaves.

    python -m bench.tanh_error [--chunk-bits 24]
"""

import argparse
import sys
import time

import numpy as np
import onnxruntime as ort

from core.activation import TanhProbe
from core.certify import DEFAULT_TANH_ERROR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunk-bits", type=int, default=24, help="2^N values per run")
    args = parser.parse_args()
    probe = TanhProbe()
    chunk = 1 << args.chunk_bits
    worst, where, checked = 0.0, 0.0, 0
    began = time.perf_counter()
    for start in range(0, 1 << 32, chunk):
        bits = np.arange(start, start + chunk, dtype=np.uint64).astype(np.uint32)
        values = bits.view(np.float32)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        errors = np.abs(probe.tanh(values).astype(np.float64) - np.tanh(values.astype(np.float64)))
        at = int(errors.argmax())
        if errors[at] > worst:
            worst, where = float(errors[at]), float(values[at])
        checked += values.size
    command = " ".join(["python -m bench.tanh_error", *sys.argv[1:]])
    print(
        f"`{command}`: onnxruntime {ort.__version__}, {checked:,} finite float32 values in "
        f"{time.perf_counter() - began:.0f} s: largest |tanh error| {worst:.4g} at x = "
        f"{where:.9g}; the certificate allows {DEFAULT_TANH_ERROR:g} "
        f"({DEFAULT_TANH_ERROR / worst:.0f}x room)"
    )


if __name__ == "__main__":
    main()
