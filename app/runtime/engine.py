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

from app.runtime.answers import Answer, Check, Detail, Flags, ModelRef, Step
from app.runtime.models import LoadedModel
from core.card import ModelCard
from core.codec import add_one, add_one_digits, carry_run, encode_batch

# Positions listed under flags.low_confidence_steps at most (the count is always exact).
LOW_CONFIDENCE_LISTED = 20
_NONE = np.zeros(0, dtype=np.int64)
_ZERO_CHAR = np.uint8(ord("0"))
# Runs of at most this many rows and cells (rows x steps) are read in plain Python, larger ones
# in numpy: where each is the cheaper (`python -m bench.rows`; docs/benchmarks.md, "Figures
# behind the code's choices").
_SMALL_ROWS, _SMALL_RUN = 8, 96


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
    model.count_digits(sum(map(len, numbers)))
    run = _Run(
        model.card, options, _Rows(numbers, digits, probs, options.low_confidence), digits, probs
    )
    results: list[list[Answer]] = []
    row = 0
    for asked, detail in requests:
        results.append([_answer(run, n, i, detail) for i, n in enumerate(asked, start=row)])
        row += len(asked)
    return results, probs


class _Run:
    """What every answer of one model run shares: the card and its figures, the options, the
    run's rows, its digits [b, width] and probabilities [b, width, 10] (read at a row only
    for the steps), and one model reference for all (orjson writes it; nobody changes it)."""

    __slots__ = ("card", "digits", "model", "options", "probs", "reliable", "rows", "tested")

    def __init__(
        self, card: ModelCard, options: EngineOptions, rows: "_Rows", digits: Any, probs: Any
    ) -> None:
        self.card, self.options, self.rows = card, options, rows
        self.digits, self.probs = digits, probs
        self.model: ModelRef = {"name": card.name, "version": card.version}
        self.reliable = card.metrics.reliable_carry_length
        self.tested = card.metrics.tested_length


class _Rows:
    """What every answer needs of the run, computed for the whole batch at once (numpy), so
    each answer only reads its row: the chosen digits and their probabilities, the output
    text, the least confident step and how many steps are below the threshold."""

    def __init__(self, numbers: list[str], digits: Any, probs: Any, low_confidence: float) -> None:
        width = probs.shape[1]
        self.steps = [len(n) + 1 for n in numbers]  # each row's own steps, the extra one too
        best = probs.argmax(axis=-1)  # [b, width]
        self.chosen = best.astype(np.uint8)
        # [b, width] float32: the chosen digit's probability. Read at the argmax, not by a
        # second reduction over a 10-wide axis, which cost a large batch ten times as much.
        self.chosen_p = probs.reshape(-1, probs.shape[-1])[np.arange(best.size), best.ravel()]
        self.chosen_p = self.chosen_p.reshape(best.shape)
        self.outputs: list[str]  # the model's answer for each row, canonical
        self.weakest: list[int]
        self.weakest_p: list[Any]  # numpy float32 per row, as orjson writes it
        self.low_counts: list[int]
        self.correct: list[bool]
        if len(numbers) <= _SMALL_ROWS and len(numbers) * width <= _SMALL_RUN:
            self._small(numbers, low_confidence)
        else:
            self._large(digits, width, low_confidence)

    def _small(self, numbers: list[str], low_confidence: float) -> None:
        """A few short rows: plain Python on lists, where each numpy call would cost more
        than the arithmetic."""
        chosen, chosen_p = self.chosen.tolist(), self.chosen_p.tolist()
        threshold = float(np.float32(low_confidence))  # compared as numpy compares float32
        self.outputs, self.weakest, self.weakest_p = [], [], []
        self.low_counts, self.correct = [], []
        for row, (number, steps) in enumerate(zip(numbers, self.steps, strict=True)):
            text = "".join(map(str, reversed(chosen[row][:steps]))).lstrip("0") or "0"
            own = chosen_p[row][:steps]
            weakest = min(range(steps), key=own.__getitem__)
            self.outputs.append(text)
            self.weakest.append(weakest)
            self.weakest_p.append(self.chosen_p[row, weakest])  # float32, as orjson writes it
            self.low_counts.append(sum(p < threshold for p in own))
            # both canonical forms of the same fixed-width digits: equal iff every step is right
            self.correct.append(text == add_one(number))

    def _large(self, digits: Any, width: int, low_confidence: float) -> None:
        """Many or long rows: whole-batch numpy."""
        # Row i's output is the last steps[i] characters of its stretch: most significant first.
        text = (self.chosen[:, ::-1] + _ZERO_CHAR).tobytes()
        ends = range(width, len(text) + 1, width)
        self.outputs = [
            text[end - steps : end].lstrip(b"0").decode("ascii") or "0"
            for end, steps in zip(ends, self.steps, strict=True)
        ]
        own = np.arange(width) < np.array(self.steps)[:, None]  # [b, width]: not padding
        masked = np.where(own, self.chosen_p, np.inf)
        weakest = masked.argmin(axis=1)
        self.weakest = weakest.tolist()
        self.weakest_p = list(masked[np.arange(len(self.steps)), weakest])  # numpy float32s
        self.low_counts = (masked < low_confidence).sum(axis=1).tolist()
        # right when every own step is (the padding is read as leading zeros: not compared)
        wrong = (self.chosen != add_one_digits(digits)) & own
        self.correct = (~wrong.any(axis=1)).tolist()


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


def ends(number: str, keep: int = 12) -> str:
    """A long number of an answer cut to its ends: '123456789012...345678901234 (1000000
    digits)' (a client's value echoed in an error is app.errors.preview)."""
    if len(number) <= 2 * keep + 3:
        return number
    return f"{number[:keep]}...{number[-keep:]} ({len(number)} digits)"


def flags_for(card: ModelCard, number: str, run: int) -> tuple[bool, Flags, list[str]]:
    """What the card says of an input ending in `run` nines before any answer: proved, the
    flags, their warnings. Shared with every answer of the same run: the caller copies them
    before it changes them (most answers need no change, and then no copy)."""
    if len(number) > card.metrics.tested_length:  # rare: the warning names the length
        return _card_says(card, run, len(number))
    key = (id(card), run)
    said = _SAID.get(key)
    if said is None or said[0] is not card:
        if len(_SAID) >= _SAID_MAX:
            _SAID.clear()
        said = _SAID[key] = (card, *_card_says(card, run, None))
    _, proved, flags, warnings = said
    return proved, flags, warnings


# What a card says by carry run, for inputs within its tested length: the same for every such
# input, so worked out once (a few microseconds an answer in a batch of 1024). Keyed by the
# card object itself (held in the value, so its id is not reused while cached).
_SAID: dict[tuple[int, int], tuple[ModelCard, bool, Flags, list[str]]] = {}
_SAID_MAX = 4096


def _card_says(card: ModelCard, run: int, length: int | None) -> tuple[bool, Flags, list[str]]:
    """flags_for's answer for a carry run of `run`; `length` if past the tested length."""
    proved = card.proves(run)
    scan = card.metrics.carry_scan
    known_failing = any(first <= run <= last for first, last in scan.failing_runs)
    beyond_length = length is not None
    warnings: list[str] = []
    reliable = card.metrics.reliable_carry_length
    decision = card.metrics.decision
    failure = decision.refutation if decision is not None else None
    if not proved:
        if failure is not None and failure.nines == 0:
            warnings.append(
                "No proof covers any answer of this model: it answers some numbers with no "
                f"nine at the end wrong (e.g. {failure.example} + 1 gave {failure.got}): this "
                "answer may be wrong."
            )
        elif failure is not None and run >= failure.nines:
            # a checked refuting input (app.runtime.checks ran it at load): say what is known
            warnings.append(
                f"Carry run {run} is past the proved {reliable}; the model fails at "
                f"{failure.nines} (e.g. {failure.example} + 1 gave {failure.got}): this answer "
                "may be wrong."
            )
        elif reliable == -1:
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
            f"The input has {length} digits, longer than any length this model was tested "
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


def _answer(run: _Run, number: str, row: int, detail: Detail) -> Answer:
    """The answer for row `row` of the run."""
    rows, options = run.rows, run.options
    steps = len(number) + 1  # the row's own steps: its digits plus the extra zero step
    carry = carry_run(number)
    proved, flags, warnings = flags_for(run.card, number, carry)

    weakest = rows.weakest[row]
    confidence: Any = None  # [steps] float32, sliced only when steps or their scan need it
    low = _NONE  # positions below the threshold, ascending; the common case needs no scan
    if rows.low_counts[row]:
        confidence = rows.chosen_p[row, :steps]
        low = np.flatnonzero(confidence < options.low_confidence)
    if low.size:
        flags = {
            **flags,
            "low_confidence": True,
            "low_confidence_count": int(low.size),
            "low_confidence_steps": low[:LOW_CONFIDENCE_LISTED].tolist(),
        }
        shown = ", ".join(map(str, low[:5].tolist())) + (", ..." if low.size > 5 else "")
        warnings = [
            *warnings,
            f"{low.size} step(s) chose a digit with probability below {options.low_confidence}, "
            f"at position(s) {shown} (position 0 is the units digit).",
        ]

    step_list: list[Step] = []
    if detail != "none":
        if confidence is None:
            confidence = rows.chosen_p[row, :steps]
        which: slice | Any = slice(0, steps)  # full and digits list every step
        if detail == "summary":
            k = min(options.summary_steps, steps)
            which = np.sort(np.argpartition(confidence, k - 1)[:k])
        listed = detail != "digits"  # the 10 probabilities of each step
        chosen = rows.chosen[row, :steps]
        step_list = _steps(
            which, run.digits[row], chosen, confidence, run.probs[row], steps - 1, listed
        )

    correct: bool = rows.correct[row]
    expected = None if correct else add_one(number)
    if expected is not None:
        warnings = [
            *warnings,
            f"The model's answer is wrong: {ends(number)} + 1 = {ends(expected)}.",
        ]
    check: Check = {"correct": correct, "expected": expected}
    return {
        "input": number if len(number) <= options.echo_digits else ends(number),
        "input_digits": len(number),
        "output": rows.outputs[row],
        "detail": detail,
        "steps": step_list,
        "min_probability": rows.weakest_p[row],
        "min_probability_position": weakest,
        "carry_run": carry,
        "reliable_carry_length": run.reliable,
        "proved": proved,
        "tested_length": run.tested,
        "flags": flags,
        "warnings": warnings,
        "check": check,
        "model": run.model,
    }
