"""The onnxruntime session every measurement and every answer runs: what is measured is served.

Training measures its card figures through these options and the service answers through them,
so a figure on a card is a figure of the arithmetic that is deployed.
"""

from pathlib import Path
from typing import Any

import onnxruntime as ort


def session_options() -> Any:
    """One thread, sequential: a request is small; concurrency comes from many requests."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT's warnings are not the operator's concern
    # No arena: a 10^6-digit request would otherwise keep its hundreds of MB for good.
    options.enable_cpu_mem_arena = False
    # No memory pattern: with one, every run after the first of a 10^6-digit input peaked
    # higher (docs/benchmarks.md), and small runs were no faster.
    options.enable_mem_pattern = False
    return options


def open_session(model: bytes | str | Path) -> Any:
    """An onnxruntime.InferenceSession (untyped) on the CPU with the options above."""
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(
        source, sess_options=session_options(), providers=["CPUExecutionProvider"]
    )
