"""The engine: numbers -> one model run -> per-number answers with steps, flags and a check.

Pure computation on a LoadedModel, no HTTP. Steps are built from whole-array numpy operations,
and probabilities stay float32 arrays that orjson writes directly (shortest float32 text).
Flags about the carry and the length come from the model card, so they are known before the
answer is; the low-confidence flag comes from the answer's own probabilities.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.inputs import Detail
from app.registry import LoadedModel
from core.codec import add_one, carry_run, decode, encode_batch

Result = dict[str, Any]

# Positions listed under flags.low_confidence_steps at most (the count is always exact).
LOW_CONFIDENCE_LISTED = 20
_NONE = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """What shapes an answer: the confidence threshold and the size of a summary."""

    low_confidence: float
    summary_steps: int


def answer(
    model: LoadedModel, numbers: list[str], detail: Detail, options: EngineOptions
) -> list[Result]:
    """n + 1 for each number in one model run (padded to the longest), results in order."""
    return answer_each(model, [(numbers, detail)], options)[0]


def answer_each(
    model: LoadedModel, requests: list[tuple[list[str], Detail]], options: EngineOptions
) -> list[list[Result]]:
    """Several requests' numbers in one model run; each request's results, in order."""
    numbers = [number for asked, _ in requests for number in asked]
    digits = encode_batch(numbers)  # [b, longest + 1], least significant first
    probs = model.run(digits)  # [b, longest + 1, 10] float32
    chosen = probs.argmax(axis=-1).astype(np.uint8)  # [b, longest + 1], as decode takes it
    # The chosen digit's probability, [b, longest + 1]; a flat gather is cheaper than max().
    flat = chosen.ravel()
    chosen_p = probs.reshape(-1, 10)[np.arange(flat.size), flat].reshape(chosen.shape)
    model.count_digits(sum(map(len, numbers)))
    results: list[list[Result]] = []
    row = 0
    for asked, detail in requests:
        results.append(
            [
                _result(model, n, digits[i], chosen[i], chosen_p[i], probs[i], detail, options)
                for i, n in enumerate(asked, start=row)
            ]
        )
        row += len(asked)
    return results


def _steps(
    which: slice | Any,
    inputs: Any,
    outputs: Any,
    chosen_p: Any,
    probs: Any,
    extra: int,
    listed: bool,
) -> list[Result]:
    """Step dicts for positions `which` (a slice or ascending indices), with or without the 10
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


def _result(
    model: LoadedModel,
    number: str,
    digits: Any,
    chosen: Any,
    chosen_p: Any,
    probs: Any,
    detail: Detail,
    options: EngineOptions,
) -> Result:
    steps = len(number) + 1  # the row's own steps: its digits plus the extra zero step
    outputs = chosen[:steps]  # [steps] int64
    confidence = chosen_p[:steps]  # [steps] float32
    output = decode(outputs)
    expected = add_one(number)

    card = model.card
    run = carry_run(number)
    reliable = card.reliable_carry
    beyond_carry = reliable is not None and run > reliable
    beyond_length = len(number) > card.metrics.tested_length
    weakest = int(confidence.argmin())
    if confidence[weakest] < options.low_confidence:
        low = np.flatnonzero(confidence < options.low_confidence)  # positions, ascending
    else:
        low = _NONE  # the common case, without a scan

    which: slice | Any = slice(0, steps)  # full and digits list every step
    if detail == "summary":
        k = min(options.summary_steps, steps)
        which = np.sort(np.argpartition(confidence, k - 1)[:k])
    elif detail == "none":
        which = slice(0, 0)
    step_list = _steps(
        which, digits, outputs, confidence, probs, steps - 1, listed=detail != "digits"
    )

    warnings: list[str] = []
    if beyond_carry:
        warnings.append(
            f"The input ends in {run} nines, more than this model's reliable carry length "
            f"({reliable}): the carry may be wrong."
        )
    if beyond_length:
        warnings.append(
            f"The input has {len(number)} digits, longer than any length this model was tested "
            f"on without error ({card.metrics.tested_length})."
        )
    if low.size:
        shown = ", ".join(map(str, low[:5].tolist())) + (", ..." if low.size > 5 else "")
        warnings.append(
            f"{low.size} step(s) chose a digit with probability below {options.low_confidence}, "
            f"at position(s) {shown} (position 0 is the units digit)."
        )
    if output != expected:
        warnings.append(f"The model's answer is wrong: {_short(number)} + 1 = {_short(expected)}.")

    return {
        "input": number,
        "output": output,
        "detail": detail,
        "steps": step_list,
        "min_probability": confidence[weakest],
        "min_probability_position": weakest,
        "carry_run": run,
        "reliable_carry_length": card.metrics.reliable_carry_length,
        "carry_certified": card.metrics.carry_certified,
        "tested_length": card.metrics.tested_length,
        "flags": {
            "beyond_reliable_carry": beyond_carry,
            "beyond_tested_length": beyond_length,
            "low_confidence": bool(low.size),
            "low_confidence_count": int(low.size),
            "low_confidence_steps": low[:LOW_CONFIDENCE_LISTED].tolist(),
        },
        "warnings": warnings,
        "check": {"expected": expected, "correct": output == expected},
        "model": {"name": card.name, "version": card.version},
    }


def _short(number: str) -> str:
    return number if len(number) <= 40 else f"{number[:15]}...{number[-15:]} ({len(number)} digits)"
