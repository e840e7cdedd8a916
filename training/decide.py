"""Decide a model's reliable carry length: the largest K whose certificate checks (the sets
searched by training.sets_fit, or training.walk_fit when they do not close), and a served input
of run K + 1 that is answered wrong; the certificate shipped beside the card, the decision on it.
A walked certificate's sets are then grown, trimmed and scaled where that shortens its walk
(training.shorten), so the service's check at load is cheaper. The search's walks and checks
run on every core (training.walk_pool). Only core.decide.check decides: the search may be
wrong, never the certificate.
"""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from time import perf_counter
from typing import Literal

import numpy as np

from core import card as card_schema
from core import carrying, copying, decide
from core.card import ModelCard
from core.cells import RnnCell
from core.certify import DEFAULT_TANH_ERROR
from core.codec import add_one, carry_run, decode, encode_batch
from core.copying import CertificateError, Invariant
from core.decide import Checked
from core.session import open_session
from core.weights import RnnWeights, UnsupportedModelError, recurrent_weights_from_onnx
from training import carrying as carrying_search
from training import walk_pool
from training.copy_search import copying_failure
from training.sets_fit import DEEPEST, fit
from training.shorten import shorten
from training.walk_fit import fit_steady, fit_walk, with_carrying

CARRY_LIMIT = 1000  # the longest run of nines tried
BUDGET = 45.0  # seconds of search before a bisection between fits stops (K stays a range)
# seconds of search before the fits stop (K stays a range): issue 20 asks a decision within 60 s
# on 2 cores; this leaves room for the slowest seed the steady fit decides (docs/proof.md,
# "Deeper, not wider"), and ends a search that will not close
SECONDS = 300.0


@dataclass(frozen=True)
class Decision:
    """What the search found: the proved K with its certificate, and the refuting input."""

    proved: int | Literal["unbounded"]  # -1: nothing proved; "unbounded": every run
    invariant: Invariant | None
    checked: Checked | None
    # an input answered wrong: of run proved + 1 when decided exactly, else the shortest run
    # whose carrying or absorbed states read wrong (K lies between)
    refutation: str | None
    refuted_answer: str | None  # what the model answered for it
    seconds: float
    reason: str  # why the proof stops where it does


def _points_hold(cell: RnnCell, proved: int) -> bool:
    try:
        decide.entries(cell, proved)
    except CertificateError:
        return False
    return True


def longest_points(cell: RnnCell, limit: int = CARRY_LIMIT) -> int:
    """The largest K <= limit whose carrying and absorbed states all read right (-1: none).
    The check is a prefix check in K, so a binary search finds it."""
    if not _points_hold(cell, 0):
        return -1
    low, high = 0, limit  # low holds; find the largest that holds
    if _points_hold(cell, high):
        return high
    while high - low > 1:
        middle = (low + high) // 2
        if _points_hold(cell, middle):
            low = middle
        else:
            high = middle
    return low


def decide_carry(
    weights: RnnWeights,
    answer: Callable[[str], str],
    key_digits: int = 2,
    tanh_error: float = DEFAULT_TANH_ERROR,
    limit: int = CARRY_LIMIT,
    walk: bool = False,
    failing: int | None = None,
    seconds: float | None = SECONDS,
) -> Decision:
    """The largest K the certificate proves (up to `limit`, or every K), and an input of run
    K + 1 that `answer` (the served graph) gets wrong, when one is found. failing: the
    shortest run known to fail (the card's carry scan), so the search aims below it at once.
    First a search for a number with no trailing nine answered wrong (training.copy_search):
    one decides K = -1 at once.

    The copying sets do not depend on K, only the entries do: one fit at the aimed K (the
    chain's top, or the carrying set's run when the chain settles), and where that fails, one
    at K = 0 raised to every K whose entries lie in its sets (`extend`); fits between, by
    bisection, only while the budget lasts. seconds: no fit goes on past this much search (its
    walks are cut short there); a certificate found is still shortened and checked."""
    start = perf_counter()
    until = None if seconds is None else time.monotonic() + seconds
    copied = copying_failure(weights, answer)
    if copied is not None:
        # no proof of any K >= 0 can hold: K = -1, refuted at run 0, decided
        slipped, slip = copied
        reason = f"{slipped} + 1 gave {slip}: a digit after the carry is not copied right"
        return Decision(-1, None, None, slipped, slip, perf_counter() - start, reason)
    cell = RnnCell(weights, tanh_error)
    ceiling = limit if failing is None else min(limit, failing - 1)
    carry = None
    if failing is None:
        # every key is at most DEEPEST digits: the set must hold from DEEPEST - 2 nines on
        found = carrying_search.fit(cell, limit, DEEPEST - 2)
        carry = found if isinstance(found, carrying.Set) else None
    top = carry.nines if carry is not None else longest_points(cell, ceiling)
    proved: int | Literal["unbounded"] = -1
    invariant, checked, reason = None, None, "no run of nines is proved"
    tried: dict[int, tuple[Invariant, Checked] | str] = {}

    def in_time() -> bool:
        return until is None or time.monotonic() < until

    def attempt(k: int) -> tuple[Invariant, Checked] | str:
        tried[k] = fit(weights, k, key_digits, tanh_error)
        if walk and isinstance(tried[k], str):
            walked = fit_walk(weights, k, tanh_error, until=until)
            if isinstance(walked, str) and in_time():
                closing = carry if carry is not None and k == carry.nines else None
                walked = fit_steady(weights, k, tanh_error, closing, until=until)
            tried[k] = walked  # when none closes, the reason is the last fit's
        return tried[k]

    def searching() -> bool:
        return perf_counter() - start < BUDGET and in_time()

    if top >= 0:
        best = attempt(top)
        if isinstance(best, str) and top > 0 and searching():
            low = best = extend(weights, attempt(0), top, tanh_error)
            high = top  # the fits fail here
            while not isinstance(low, str) and low[0].proved < high - 1:
                if not searching():
                    break
                middle = (low[0].proved + high) // 2
                found_middle = attempt(middle)
                if isinstance(found_middle, str):
                    high = middle
                    continue
                low = best = extend(weights, found_middle, top, tanh_error)
        if isinstance(best, str):
            reason = best
        else:
            invariant, checked = best
            proved = invariant.proved
            failed = tried.get(proved + 1)
            reason = (
                failed
                if isinstance(failed, str)
                else f"the carrying or absorbed states of a run of {proved + 1} nines read wrong"
            )
            if carry is not None and proved == carry.nines:
                closed = _closed(weights, best, carry, tanh_error)
                if isinstance(closed, str):
                    reason = closed
                else:
                    (invariant, checked), proved = closed, "unbounded"
                    reason = f"the carrying set holds every run from {carry.nines} nines on"
    if invariant is not None and checked is not None:
        invariant, checked = shorten(weights, invariant, checked, tanh_error)
    if proved == "unbounded":
        return Decision(proved, invariant, checked, None, None, perf_counter() - start, reason)
    # the failing input: at K + 1 when decided exactly, else where the tight states fail
    refuted, got = _refute(answer, proved + 1)
    if refuted is None and top > proved:
        refuted, got = _refute(answer, top + 1)
    return Decision(proved, invariant, checked, refuted, got, perf_counter() - start, reason)


def extend(
    weights: RnnWeights,
    found: tuple[Invariant, Checked] | str,
    top: int,
    tanh_error: float = DEFAULT_TANH_ERROR,
) -> tuple[Invariant, Checked] | str:
    """A checked certificate raised to the largest K <= top whose carrying and absorbed
    states read right and whose first copying states lie in its sets (the sets unchanged:
    the cost per K is the entries' alone)."""
    if isinstance(found, str):
        return found
    invariant = found[0]
    cell = RnnCell(weights, tanh_error)
    reach = longest_points(cell, top)
    if reach <= invariant.proved:
        return found
    lo, hi, tails, _ = decide.entries(cell, reach)
    sets = copying.sets_of(invariant)
    keys = copying.key_index(sets.keys, tails)
    outside = copying.coordinates(sets, keys, lo, hi).max(axis=1) > sets.limit[keys]
    by_run = outside.reshape(reach + 1, -1).any(axis=1)  # the entries: 90 per run, in order
    proved = reach if not by_run.any() else int(np.argmax(by_run)) - 1
    if proved <= invariant.proved:
        return found
    raised = replace(invariant, proved=proved)
    try:
        return raised, walk_pool.check(weights, raised, tanh_error)
    except CertificateError:
        return found


def _closed(
    weights: RnnWeights,
    found: tuple[Invariant, Checked],
    carry: carrying.Set,
    tanh_error: float,
) -> tuple[Invariant, Checked] | str:
    """The certificate with the carrying set attached, checked (every run); or why not. The
    steady fit attaches it itself when its check passes: such a certificate is as found."""
    if found[1].proved == "unbounded":
        return found
    try:
        return with_carrying(weights, found[0], carry, tanh_error)
    except CertificateError as exc:
        return f"the carrying set does not close: {exc}"


def _refute(answer: Callable[[str], str], run: int) -> tuple[str | None, str | None]:
    """An input with exactly `run` trailing nines that the served model answers wrong."""
    for head in [
        "",
        *map(str, range(1, 9)),
        *(f"{t:02d}{d}" for t in range(100) for d in range(9)),
    ]:
        number = head + "9" * run
        if not number:
            continue
        got = decide.refutation(answer, number)
        if got is not None:
            return number, got
    return None, None


def certificate_path(model: Path) -> Path:
    """Where a model's certificate ships: beside its card, MODEL.cert.npz."""
    return model.with_name(model.name + ".cert.npz")


def decide_file(
    model: Path,
    key_digits: int = 2,
    limit: int = CARRY_LIMIT,
    walk: bool = False,
    seconds: float | None = SECONDS,
) -> str:
    """Decide a shipped model (MODEL.onnx, MODEL.json) without retraining it: write
    MODEL.cert.npz when a K >= 0 is proved (and remove a stale one otherwise) and the decision
    on the card; one line saying what was decided. seconds: decide_carry's."""
    card_path = model.with_suffix(".json")
    card = ModelCard.model_validate_json(card_path.read_text())
    blob = (card_path.parent / card.onnx_file).read_bytes()
    try:
        weights = recurrent_weights_from_onnx(blob)
    except UnsupportedModelError as exc:
        return f"{model.name}: not decided: {exc}"
    if not isinstance(weights, RnnWeights):
        return f"{model.name}: not decided: the parallelotope certificate covers tanh RNNs only"
    session = open_session(blob)

    def answer(number: str) -> str:
        (probs,) = session.run(None, {card.input_name: encode_batch([number])})
        return decode(np.asarray(probs).argmax(axis=-1)[0])

    # the scan's shortest failing run bounds K from above: the search aims just below it
    scanned = card.metrics.carry_scan.first_failure
    failing = None if scanned is None else scanned.nines
    decision = decide_carry(
        weights, answer, key_digits, limit=limit, walk=walk, failing=failing, seconds=seconds
    )
    decision = _scans_failure(decision, card, answer)
    target = certificate_path(model)
    if decision.invariant is not None:
        target.write_bytes(decision.invariant.to_bytes())
    else:
        target.unlink(missing_ok=True)
    recorded = on_card(decision, target, key_digits)
    metrics = card.metrics.model_copy(update={"decision": recorded})
    card = card.model_copy(update={"metrics": metrics})
    card_path.write_text(card.model_dump_json(indent=2) + "\n")
    return f"{model.name}: {words(recorded)}; {decision.seconds:.1f} s"


def _scans_failure(decision: Decision, card: ModelCard, answer: Callable[[str], str]) -> Decision:
    """The card's carry scan finds the shortest failing run among its inputs (any 3-digit
    tail): when that is shorter than the refutation found, and the graph answers it wrong
    here too, it is the refutation."""
    scanned = card.metrics.carry_scan.first_failure
    if scanned is None:
        return decision
    if decision.proved == "unbounded":
        raise AssertionError(f"proved for every run, yet the scan fails at {scanned.nines}")
    if decision.refutation is not None and carry_run(decision.refutation) <= scanned.nines:
        return decision
    got = decide.refutation(answer, scanned.example)
    if got is None:
        return decision
    return replace(decision, refutation=scanned.example, refuted_answer=got)


def on_card(decision: Decision, target: Path, key_digits: int) -> card_schema.Decision:
    """The card's record of a decision whose certificate (if any) was written to target."""
    refutation = None
    if decision.refutation is not None and decision.refuted_answer is not None:
        refutation = card_schema.Refutation(
            nines=carry_run(decision.refutation),
            example=decision.refutation,
            expected=add_one(decision.refutation),
            got=decision.refuted_answer,
        )
    shipped = decision.invariant is not None
    walked = decision.invariant is not None and decision.invariant.steps > 1
    entered = decision.invariant is not None and decision.invariant.entry_steps > 0
    closed = decision.invariant is not None and decision.invariant.carrying_centre is not None
    if decision.invariant is not None:
        key_digits = decision.invariant.key_digits
    return card_schema.Decision(
        method=(decide.WALK_METHOD if walked else decide.METHOD)
        + (decide.ENTRY_METHOD if entered else "")
        + (carrying.METHOD if closed else ""),
        proved_carry_length=decision.proved,
        refutation=refutation,
        certificate_file=target.name if shipped else None,
        certificate_sha256=hashlib.sha256(target.read_bytes()).hexdigest() if shipped else None,
        key_digits=key_digits,
        tanh_error_bound=DEFAULT_TANH_ERROR,
        margin=decision.checked.margin if decision.checked else None,
        search_seconds=round(decision.seconds, 1),
        reason=decision.reason[:300],
    )


def words(decision: card_schema.Decision) -> str:
    """A decision in one line: 'proved K = 4; decided exactly: fails at 5 (99999 + 1 gave 0)'."""
    proved = decision.proved_carry_length
    shipped = decision.certificate_file or "no certificate"
    if proved == "unbounded":
        return f"proved for every run of nines (a carrying set); {shipped}"
    if decision.refutation is None:
        refuted = f"no failing input of run {proved + 1} found"
    else:
        failure = decision.refutation
        exact = (
            "decided exactly"
            if decision.exact
            else f"K is between {proved} and {failure.nines - 1}"
        )
        refuted = f"{exact}: fails at {failure.nines} ({failure.example} + 1 gave {failure.got})"
    return f"proved K = {proved}; {refuted}; {shipped}"
