"""Engine benchmark: onnxruntime (as the service runs it) against torch eager, same model.

The torch model is training's own `Counter`, with the weights read back out of the shipped
.onnx file (and checked to give the same probabilities), so both engines compute the same
function on the same inputs. Each case alternates the two engines for several rounds and
prints medians and the ratio; one thread each, as the service runs. The long-number case
also times the service's whole answer (model run, steps summary, flags, exact check) and
checks that time grows linearly with length. Last, one 10-digit number's whole answer as
POST /increment sends it (every step, JSON): warm, and after the core has idled 200 us, as a
server's core does between the requests of one client.

    python -m bench.engine [--model counter] [--rounds 5]
"""

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import torch

from app.runtime.engine import EngineOptions, answer
from app.runtime.registry import load_model
from app.settings import DEFAULT_MODELS_DIR
from core.codec import encode_batch
from training.model import Probabilities
from training.onnx_graph import counter_from_onnx

GAP_NS = 200_000  # about the gap between one client's requests at c = 1 (bench.http)


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def side_by_side(
    label: str, ort: Callable[[], object], eager: Callable[[], object], repeat: int, rounds: int
) -> None:
    ort_times, torch_times = [], []
    for _ in range(rounds):  # alternate, so both see the same machine load
        ort_times.append(median_seconds(ort, repeat))
        torch_times.append(median_seconds(eager, repeat))
    o, t = statistics.median(ort_times), statistics.median(torch_times)
    print(f"{label:<30}{_fmt(o):>12}{_fmt(t):>12}{t / o:>9.1f}x")


def after_gap(fn: Callable[[], object], repeat: int, idle: bool) -> float:
    """Median seconds of fn, each call after GAP_NS of sleep (the core idles: a virtual CPU
    halts) or of spinning (the core stays busy, its caches warm)."""
    times = []
    for _ in range(repeat):
        if idle:
            time.sleep(GAP_NS / 1e9)
        else:
            until = time.perf_counter_ns() + GAP_NS
            while time.perf_counter_ns() < until:
                pass
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def warm_and_cold(name: str, fn: Callable[[], object], rounds: int) -> None:
    """fn back to back, after a spin, after an idle: alternating rounds, medians."""
    cases: dict[str, list[float]] = {
        "back to back": [],
        "after 200 us spinning": [],
        "after 200 us idle": [],
    }
    for _ in range(rounds):
        cases["back to back"].append(median_seconds(fn, 2000))
        cases["after 200 us spinning"].append(after_gap(fn, 2000, idle=False))
        cases["after 200 us idle"].append(after_gap(fn, 2000, idle=True))
    figures = ", ".join(f"{case} {_fmt(statistics.median(t))}" for case, t in cases.items())
    print(f"  {name}: {figures}")


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="counter")
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the service runs onnxruntime on one thread

    model = load_model(args.models_dir / f"{args.model}.json", 64 << 20)
    twin = Probabilities(counter_from_onnx(model.path)).eval()
    rng = np.random.default_rng(0)

    def numbers(count: int, length: int) -> list[str]:
        return ["".join(map(str, rng.integers(0, 10, length))) for _ in range(count)]

    def pair(digits: np.ndarray) -> tuple[Callable[[], object], Callable[[], object]]:
        tensor = torch.from_numpy(digits)

        def eager() -> object:
            with torch.inference_mode():
                return twin(tensor)

        return (lambda: model.run(digits)), eager

    check = encode_batch(numbers(64, 30))
    diff = np.abs(model.run(check) - pair(check)[1]().numpy()).max()  # type: ignore[attr-defined]
    print(f"model {args.model}: onnxruntime and torch agree to {diff:.1e} (max abs probability)")
    print(
        f"torch {torch.__version__} eager, 1 thread; medians of {args.rounds} alternating rounds\n"
    )
    print(f"{'model run':<30}{'onnxrt':>12}{'torch':>12}{'speedup':>10}")
    ort, eager = pair(encode_batch(numbers(1, 10)))
    side_by_side("1 number x 10 digits", ort, eager, 200, args.rounds)
    ort, eager = pair(encode_batch(numbers(1024, 20)))
    side_by_side("1024 numbers x 20 digits", ort, eager, 10, args.rounds)
    ort, eager = pair(encode_batch(numbers(1, 1_000_000)))
    side_by_side("1 number x 10^6 digits", ort, eager, 1, max(3, args.rounds // 2))

    options = EngineOptions(low_confidence=0.9, summary_steps=5, echo_digits=10_000)
    print("\nthe service's whole answer (run, summary of steps, flags, exact check), onnxruntime:")
    per_digit = {}
    for length in (10_000, 100_000, 1_000_000):
        number = numbers(1, length)

        def whole(number: list[str] = number) -> object:
            return answer(model, number, "summary", options)

        seconds = statistics.median(median_seconds(whole, 1) for _ in range(3))
        per_digit[length] = seconds / length
        ns = seconds / length * 1e9
        print(f"  {length:>9,} digits: {_fmt(seconds):>9}  ({ns:.0f} ns per digit)")
    growth = per_digit[1_000_000] / per_digit[10_000]
    print(f"  time per digit at 10^6 / at 10^4 = {growth:.2f} (1.00 is exactly linear)")

    print(
        "\none 10-digit number, as POST /increment answers it at c = 1 (a core that idles between"
    )
    print("requests goes cold: a virtual CPU halts, and its caches are refilled on waking):")
    one = ["1476233999"]
    digits = encode_batch(one)
    warm_and_cold("onnxruntime's run", lambda: model.run(digits), args.rounds)

    def whole_answer() -> bytes:
        result = answer(model, one, "full", options)[0]
        return orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)

    warm_and_cold("whole answer and its JSON", whole_answer, args.rounds)


if __name__ == "__main__":
    main()
