"""The engine: numbers -> one model run -> per-number answers with steps, proof, flags and check.

Pure computation on a LoadedModel, no HTTP. Steps are built from whole-array numpy operations,
and probabilities stay float32 arrays that orjson writes directly (shortest float32 text).
Whether an answer is proved, and the carry and length flags, come from the model's card (its
proof re-checked by the registry at load), so they are known before the answer is; the
low-confidence flag comes from the answer's own probabilities.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.answers import Answer, Check, Detail, Flags, Step
from app.registry import LoadedModel
from core.card import ModelCard
from core.codec import add_one, carry_run, decode, encode_batch

# Positions listed under flags.low_confidence_steps at most (the count is always exact).
LOW_CONFIDENCE_LISTED = 20
_NONE = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """What shapes an answer: confidence threshold, size of a summary, longest echoed input."""

    low_confidence: float
    summary_steps: int
    echo_digits: int


def answer(
    model: LoadedModel,
    numbers: list[str],
    detail: Detail,
    options: EngineOptions,
    run_options: Any = None,
) -> list[Answer]:
    """n + 1 for each number in one model run (padded to the longest), results in order."""
    return answer_each(model, [(numbers, detail)], options, run_options)[0]


def answer_each(
    model: LoadedModel,
    requests: list[tuple[list[str], Detail]],
    options: EngineOptions,
    run_options: Any = None,
) -> list[list[Answer]]:
    """Several requests' numbers in one model run; each request's results, in order.

    run_options (onnxruntime.RunOptions, for runs on a worker thread) can stop the run.
    """
    return answer_with_probabilities(model, requests, options, run_options)[0]


def answer_with_probabilities(
    model: LoadedModel,
    requests: list[tuple[list[str], Detail]],
    options: EngineOptions,
    run_options: Any = None,
) -> tuple[list[list[Answer]], Any]:
    """answer_each, and the run's probabilities, float32 [numbers, longest + 1, 10]."""
    numbers = [number for asked, _ in requests for number in asked]
    digits = encode_batch(numbers)  # [b, longest + 1], least significant first
    probs = model.run(digits, run_options)  # [b, longest + 1, 10] float32
    chosen = probs.argmax(axis=-1).astype(np.uint8)  # [b, longest + 1], as decode takes it
    chosen_p = probs.max(axis=-1)  # [b, longest + 1] float32: the chosen digit's probability
    model.count_digits(sum(map(len, numbers)))
    results: list[list[Answer]] = []
    row = 0
    for asked, detail in requests:
        results.append(
            [
                _answer(model.card, n, digits[i], chosen[i], chosen_p[i], probs[i], detail, options)
                for i, n in enumerate(asked, start=row)
            ]
        )
        row += len(asked)
    return results, probs


def _steps(
    which: slice | Any,
    inputs: Any,
    outputs: Any,
    chosen_p: Any,
    probs: Any,
    extra: int,
    listed: bool,
) -> list[Step]:
    """Steps for positions `which` (a slice or ascending indices), with or without the 10
    probabilities (float32 rows that orjson writes as they are)."""
    positions = range(extra + 1)[which] if isinstance(which, slice) else which.tolist()
    inputs_, outputs_ = inputs[which].tolist(), outputs[which].tolist()
    chosen_ = chosen_p[which]  # float32: orjson writes each as its shortest form
    if not listed:
        return [
            {
                "position": j,
                "input_digit": d,
                "output_digit": o,
                "probability": p,
                "extra": j == extra,
            }
            for j, d, o, p in zip(positions, inputs_, outputs_, chosen_, strict=True)
        ]
    rows = probs[which]  # [steps, 10] float32, one row per step
    return [
        {
            "position": j,
            "input_digit": d,
            "output_digit": o,
            "probability": p,
            "probabilities": row,
            "extra": j == extra,
        }
        for j, d, o, p, row in zip(positions, inputs_, outputs_, chosen_, rows, strict=True)
    ]


def preview(number: str, keep: int = 12) -> str:
    """A long number cut to its ends: '123456789012...345678901234 (1000000 digits)'."""
    if len(number) <= 2 * keep + 3:
        return number
    return f"{number[:keep]}...{number[-keep:]} ({len(number)} digits)"


def flags_for(card: ModelCard, number: str) -> tuple[bool, Flags, list[str]]:
    """What the card says of an input before any answer: proved, the flags, their warnings.

    The low-confidence fields are filled in from the answer by the caller.
    """
    run = carry_run(number)
    proved = card.proves(run)
    scan = card.metrics.carry_scan
    known_failing = any(first <= run <= last for first, last in scan.failing_runs)
    beyond_length = len(number) > card.metrics.tested_length
    warnings: list[str] = []
    reliable = card.metrics.reliable_carry_length
    if not proved:
        if reliable == -1:
            warnings.append(
                "No proof covers any answer of this model (its reliable carry length is -1): "
                "this answer may be wrong."
            )
        else:
            warnings.append(
                f"The input ends in {run} nines, more than this model's proved reliable carry "
                f"length ({reliable}): no proof covers this answer; it may be wrong."
            )
    if known_failing:
        warnings.append(
            f"The card's carry scan found wrong answers for inputs ending in {run} nines."
        )
    if beyond_length and not proved:
        warnings.append(
            f"The input has {len(number)} digits, longer than any length this model was tested "
            f"on without error ({card.metrics.tested_length})."
        )
    flags: Flags = {
        "beyond_reliable_carry": not proved,
        "beyond_tested_length": beyond_length,
        "known_failing_carry": known_failing,
        "low_confidence": False,
        "low_confidence_count": 0,
        "low_confidence_steps": [],
    }
    return proved, flags, warnings


def _answer(
    card: ModelCard,
    number: str,
    digits: Any,
    chosen: Any,
    chosen_p: Any,
    probs: Any,
    detail: Detail,
    options: EngineOptions,
) -> Answer:
    steps = len(number) + 1  # the row's own steps: its digits plus the extra zero step
    outputs = chosen[:steps]  # [steps] uint8
    confidence = chosen_p[:steps]  # [steps] float32
    output = decode(outputs)
    expected = add_one(number)
    proved, flags, warnings = flags_for(card, number)

    weakest = int(confidence.argmin())
    if confidence[weakest] < options.low_confidence:
        low = np.flatnonzero(confidence < options.low_confidence)  # positions, ascending
    else:
        low = _NONE  # the common case, without a scan
    if low.size:
        flags["low_confidence"] = True
        flags["low_confidence_count"] = int(low.size)
        flags["low_confidence_steps"] = low[:LOW_CONFIDENCE_LISTED].tolist()
        shown = ", ".join(map(str, low[:5].tolist())) + (", ..." if low.size > 5 else "")
        warnings.append(
            f"{low.size} step(s) chose a digit with probability below {options.low_confidence}, "
            f"at position(s) {shown} (position 0 is the units digit)."
        )

    which: slice | Any = slice(0, steps)  # full and digits list every step
    if detail == "summary":
        k = min(options.summary_steps, steps)
        which = np.sort(np.argpartition(confidence, k - 1)[:k])
    elif detail == "none":
        which = slice(0, 0)
    step_list = _steps(
        which, digits, outputs, confidence, probs, steps - 1, listed=detail != "digits"
    )

    correct = output == expected
    if not correct:
        warnings.append(
            f"The model's answer is wrong: {preview(number)} + 1 = {preview(expected)}."
        )
    check: Check = {"correct": correct, "expected": None if correct else expected}
    return {
        "input": number if len(number) <= options.echo_digits else preview(number),
        "input_digits": len(number),
        "output": output,
        "detail": detail,
        "steps": step_list,
        "min_probability": confidence[weakest],
        "min_probability_position": weakest,
        "carry_run": carry_run(number),
        "reliable_carry_length": card.metrics.reliable_carry_length,
        "proved": proved,
        "tested_length": card.metrics.tested_length,
        "flags": flags,
        "warnings": warnings,
        "check": check,
        "model": {"name": card.name, "version": card.version},
    }
