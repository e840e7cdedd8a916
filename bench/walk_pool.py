"""The search's walk on every core (training.walk_pool) against one walk in this process, on a
decided model's certificate, alternately: each walk's median seconds over the rounds, and the
ratio. A certificate whose walks start from fewer than 256 sets or roots (`counter-post`'s 100
sets) is walked in this process either way.

    python -m bench.walk_pool MODEL [--rounds 3]

MODEL: a model path without its suffix, decided with `python -m training decide MODEL --walk`.
"""

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from threadpoolctl import threadpool_limits

from core import copying, decide
from core.card import ModelCard
from core.cells import RnnCell
from core.copying import Invariant
from core.decide import Checked
from core.walk import Walk, walk
from core.weights import RnnWeights, recurrent_weights_from_onnx
from training.walk_pool import cores, pooled_walk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    card = ModelCard.model_validate_json(args.model.with_suffix(".json").read_text())
    decision = card.metrics.decision
    if decision is None or decision.certificate_file is None:
        raise SystemExit(f"{card.name}: no certificate (decide it with --walk)")
    folder = args.model.parent
    invariant = Invariant.from_bytes((folder / decision.certificate_file).read_bytes())
    weights = recurrent_weights_from_onnx((folder / card.onnx_file).read_bytes())
    assert isinstance(weights, RnnWeights)
    cell, sets = RnnCell(weights, decision.tanh_error_bound), copying.sets_of(invariant)
    walks: dict[str, Callable[[], Walk | Checked]] = {
        "sets": lambda: walk(cell, sets, invariant.steps, keep_going=True),
        "sets, pooled": lambda: pooled_walk(cell, sets, invariant.steps, keep_going=True),
    }
    if invariant.entry_steps:
        roots, _ = decide.absorbed_roots(cell, invariant.proved, sets.keys)
        steps = invariant.entry_steps
        walks["entries"] = lambda: walk(cell, sets, steps, roots=roots)
        walks["entries, pooled"] = lambda: pooled_walk(cell, sets, steps, roots=roots)
    walks["check"] = lambda: decide.check(weights, invariant, decision.tanh_error_bound)
    walks["check, pooled"] = lambda: decide.check(
        weights, invariant, decision.tanh_error_bound, walker=pooled_walk
    )
    seconds: dict[str, list[float]] = {name: [] for name in walks}
    with threadpool_limits(limits=1, user_api="blas"):  # as each worker: one BLAS thread
        for _ in range(args.rounds):
            for name, run in walks.items():
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)
    print(f"{card.name}: {len(sets.keys)} sets, {cores()} cores, {args.rounds} rounds")
    for name in [n for n in walks if not n.endswith("pooled")]:
        alone, pooled = seconds[name], seconds[f"{name}, pooled"]
        print(
            f"  {name}: {statistics.median(alone):.2f} s ({min(alone):.2f}-{max(alone):.2f}) "
            f"in one process, {statistics.median(pooled):.2f} s "
            f"({min(pooled):.2f}-{max(pooled):.2f}) pooled: "
            f"{statistics.median(alone) / statistics.median(pooled):.2f}x"
        )


if __name__ == "__main__":
    main()
