"""The models being served: a verified model, the registry of them, what was checked at load.

Built by app.runtime.registry (loading) after app.runtime.checks; read by every other part of
the runtime and shown by GET /models.
"""

from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from core.card import ModelCard
from core.codec import Digits

Probabilities = npt.NDArray[np.float32]  # [batch, time, 10]
RUN_CELLS = 1 << 18  # digit steps one onnxruntime run of a splittable batch takes at most


class ModelLoadError(Exception):
    """One model file that cannot be served, and why, in one line."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class DecisionCheck:
    """The card's decided carry length as this service checked it at load."""

    # its certificate on the loaded weights, its refuting input on the loaded graph

    # checked: the certificate holds and the refuting input fails here; skipped: a walked
    # certificate left unchecked (COUNTER_WALKED_CERTIFICATES=skip), so nothing of it is proved
    result: Literal["checked", "skipped"]
    proved_carry_length: Annotated[
        int | Literal["unbounded"],
        Field(
            description="K, re-derived from the certificate (-1: it proves nothing; "
            "'unbounded': every run)"
        ),
    ]
    seconds: Annotated[float, Field(description="the certificate's one-pass check")]
    refutation: Annotated[
        str | None, Field(description="the refuting input as this graph answered it")
    ]  # e.g. "99999 + 1 gave 0"
    reason: Annotated[
        str | None, Field(description="why the certificate was not checked (null: it was)")
    ] = None


@dataclass(frozen=True)
class ServingCheck:
    """What this service verified itself when it loaded the model, beside what the card says."""

    # GET /models/{name} shows it as the card's `serving` (app.api.schemas.ServedModel)

    onnxruntime: Annotated[
        str, Field(description="the onnxruntime running here (the card has its own)")
    ]
    activation_error_measured: Annotated[
        float | None,
        Field(
            description="the largest tanh or sigmoid error of this onnxruntime's kernels for the "
            "model's op (RNN, GRU or LSTM), measured through the op itself on a dense grid; the "
            "proof allows the card's certificate.tanh_error_bound; null when the card claims no "
            "proof"
        ),
    ]
    proved_carry_length: Annotated[
        int | Literal["unbounded"],
        Field(description="the proof re-run on the loaded weights: at least the card's claim"),
    ]
    proof_margin: float | None
    proof_seconds: float
    warm_up_answers: Annotated[
        int, Field(description="answers checked against exact arithmetic before serving")
    ]
    decision: Annotated[
        DecisionCheck | None,
        Field(description="the card's decided carry length, checked here (null: none)"),
    ] = None
    carry_attractor: Annotated[
        bool | None,
        Field(
            description="the card's dynamics.carry_attractor re-derived from the loaded weights "
            "(a stable fixed point of the map 'read a 9' that reads out the carry); null when "
            "the card makes no such claim"
        ),
    ] = None


@dataclass(frozen=True)
class LoadedModel:
    """A verified, warmed-up model: its card, its onnxruntime session and what was checked."""

    card: ModelCard
    path: Path
    session: Any  # onnxruntime.InferenceSession (untyped)
    check: ServingCheck
    _timer: Any = field(repr=False)  # this model's model-run histogram
    _digits: Any = field(repr=False)  # this model's digits-processed counter

    def run(self, digits: Digits, run_options: Any = None) -> Probabilities:
        """int64 [batch, time] -> float32 [batch, time, 10]: one onnxruntime run, timed; a
        batch of more than RUN_CELLS digit steps runs a few rows at a time (_run_rows).

        run_options (onnxruntime.RunOptions) lets another thread stop the run (terminate).
        """
        start = perf_counter()
        if digits.size > RUN_CELLS and len(digits) > 1:
            probs = self._run_rows(digits, run_options)
        else:
            feeds = {self.card.input_name: digits}
            (probs,) = self.session.run([self.card.output_name], feeds, run_options)
        self._timer.observe(perf_counter() - start)
        result: Probabilities = probs
        return result

    def _run_rows(self, digits: Digits, run_options: Any) -> Probabilities:
        """The batch in runs of at most RUN_CELLS steps (whole rows: each row's answer is its
        own), written into one array, so onnxruntime's intermediate tensors are those of a
        part, not of the whole batch."""
        # They take about 200 bytes a step beside the answer's 40: a 1024 x 1953-step batch's
        # run peaked about 400 MB above the process at rest in one run, about 120 in parts of
        # RUN_CELLS, its 80 MB answer included (tests/app/test_memory.py, docs/benchmarks.md).
        per = max(1, RUN_CELLS // digits.shape[1])
        names, key = [self.card.output_name], self.card.input_name
        probs: Probabilities | None = None
        for at in range(0, len(digits), per):
            (part,) = self.session.run(names, {key: digits[at : at + per]}, run_options)
            if probs is None:
                probs = np.empty((len(digits), *part.shape[1:]), dtype=part.dtype)
            probs[at : at + len(part)] = part
            del part  # freed before the next part's run
        assert probs is not None  # at least one row
        return probs

    def count_digits(self, digits: int) -> None:
        """Add to the digits-processed metric (the numbers' own digits, without padding)."""
        self._digits.inc(digits)


@dataclass(frozen=True)
class Registry:
    """The models being served, by name, and which one answers when a request names none.

    skipped: the faults of the models found but not served (the fault policy above), shown
    by GET /models so an operator sees them without reading the start-up log.
    """

    models: dict[str, LoadedModel]
    default: str
    skipped: list[ModelLoadError] = field(default_factory=list)

    def find(self, name: str | None) -> LoadedModel | None:
        """The named model (the default for None), or None when no such model is served."""
        return self.models.get(self.default if name is None else name)

    @property
    def names(self) -> list[str]:
        return sorted(self.models)
