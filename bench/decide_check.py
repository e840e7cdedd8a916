"""The service's check of a decided carry length, timed: core.decide.check on each certificate
beside a card (MODEL.cert.npz, written by `python -m training decide`), as app.runtime.checks runs
it at load (one BLAS thread, the heaps kept). Prints each model's K, the check's median seconds
over 5 runs, and the file's size.

    python -m bench.decide_check [models/]
"""

import statistics
import sys
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from app import process
from core.card import ModelCard
from core.copying import Invariant
from core.decide import check
from core.weights import RnnWeights, recurrent_weights_from_onnx


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "models")
    for card_path in sorted(folder.glob("*.json")):
        card = ModelCard.model_validate_json(card_path.read_text())
        decision = card.metrics.decision
        if decision is None or decision.certificate_file is None:
            print(f"{card.name}: no certificate")
            continue
        blob = (folder / decision.certificate_file).read_bytes()
        weights = recurrent_weights_from_onnx((folder / card.onnx_file).read_bytes())
        assert isinstance(weights, RnnWeights)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            with threadpool_limits(limits=1, user_api="blas"), process.heaps_kept():
                invariant = Invariant.from_bytes(blob)
                proved = check(weights, invariant, decision.tanh_error_bound).proved
            times.append(time.perf_counter() - start)
        print(
            f"{card.name}: K = {proved}, key digits {decision.key_digits}, check "
            f"{statistics.median(times):.3f} s (median of 5), certificate {len(blob)} bytes"
        )


if __name__ == "__main__":
    main()
