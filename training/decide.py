"""The search behind core.decide's certificate: find the largest K whose invariant checks, and a
served input of run K + 1 that is answered wrong.

The copying sets are fitted from simulated reachable states (float64 trajectories from the
first copying states through random digits, grouped by key): each key's set is a box in the
principal axes of its states, then every set is grown where the checker's own bounds say an
image or an entry pokes out, until nothing does (a fixed point) or a set grows past tanh's
range (no certificate). Only core.decide.check decides: the search may be wrong, never the
certificate.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from time import perf_counter

import numpy as np

from core import card as card_schema
from core import decide
from core.card import ModelCard
from core.cells import RnnCell
from core.certify import DEFAULT_TANH_ERROR
from core.codec import add_one, carry_run, decode, encode_batch
from core.decide import CertificateError, Checked, Invariant
from core.interval import Array
from core.session import open_session
from core.weights import RnnWeights, UnsupportedModelError, recurrent_weights_from_onnx

STEPS = 12  # simulated copying steps from each first copying state
TRAJECTORIES = 4000  # random digit strings in all (per fit)
ROUNDS = 60  # growth rounds before giving up
GROWTH = 1.02  # a set grows past what is needed by this factor, so the growth ends
FLOOR = 1e-5  # the least half-width of a set along any axis (keeps shapes invertible)
WIDEST = 2.0  # a set wider than this along an axis proves nothing: give up
CARRY_LIMIT = 1000  # the longest run of nines tried


@dataclass(frozen=True)
class Decision:
    """What the search found: the proved K with its certificate, and the refuting input."""

    proved: int  # -1: nothing proved
    invariant: Invariant | None
    checked: Checked | None
    # an input answered wrong: of run proved + 1 when decided exactly, else the shortest run
    # whose carrying or absorbed states read wrong (K lies between)
    refutation: str | None
    refuted_answer: str | None  # what the model answered for it
    seconds: float
    reason: str  # why the proof stops where it does


def _points_hold(cell: RnnCell, proved: int, key_digits: int) -> bool:
    try:
        decide.entries(cell, proved, key_digits)
    except CertificateError:
        return False
    return True


def longest_points(cell: RnnCell, key_digits: int, limit: int = CARRY_LIMIT) -> int:
    """The largest K <= limit whose carrying and absorbed states all read right (-1: none).
    The check is a prefix check in K, so a binary search finds it."""
    if not _points_hold(cell, 0, key_digits):
        return -1
    low, high = 0, limit  # low holds; find the largest that holds
    if _points_hold(cell, high, key_digits):
        return high
    while high - low > 1:
        middle = (low + high) // 2
        if _points_hold(cell, middle, key_digits):
            low = middle
        else:
            high = middle
    return low


def _samples(
    weights: RnnWeights, starts: Array, start_keys: decide.Ints, key_digits: int, seed: int
) -> list[Array]:
    """Float64 copying states reached from the first copying states, by key."""
    rng = np.random.default_rng(seed)
    keys = 10**key_digits
    shift = weights.w_ih.T + weights.b_ih + weights.b_hh  # (10, H)
    picks = rng.integers(0, len(starts), TRAJECTORIES)
    states, history = starts[picks], start_keys[picks].astype(np.int64)
    found: list[list[Array]] = [[] for _ in range(keys)]
    for _ in range(STEPS):
        digits = rng.integers(0, 10, TRAJECTORIES)
        states = np.tanh(states @ weights.w_hh.T + shift[digits])
        history = (history * 10 + digits) % keys
        order = np.argsort(history, kind="stable")
        bounds = np.searchsorted(history[order], np.arange(keys + 1))
        for key in range(keys):
            if bounds[key] < bounds[key + 1]:
                found[key].append(states[order[bounds[key] : bounds[key + 1]]])
    for key, state in zip(start_keys, starts, strict=True):
        found[int(key)].append(state[None])
    size = starts.shape[1]
    return [np.concatenate(f) if f else np.zeros((0, size)) for f in found]


def _initial(samples: list[Array], size: int) -> tuple[Array, Array, Array]:
    """Per key: centre, orthonormal axes (principal axes of its states), half-widths."""
    count = len(samples)
    centres, axes, widths = (
        np.zeros((count, size)),
        np.tile(np.eye(size), (count, 1, 1)),
        np.zeros((count, size)),
    )
    for key, states in enumerate(samples):
        if len(states) == 0:
            continue
        centres[key] = (states.max(axis=0) + states.min(axis=0)) / 2
        if len(states) > 1:
            _, _, vt = np.linalg.svd(states - states.mean(axis=0), full_matrices=False)
            if vt.shape[0] == size:
                axes[key] = vt.T
        widths[key] = np.abs((states - centres[key]) @ axes[key]).max(axis=0)
    return centres, axes, np.maximum(widths * GROWTH, FLOOR)


def fit(
    weights: RnnWeights,
    proved: int,
    key_digits: int,
    tanh_error: float = DEFAULT_TANH_ERROR,
    seed: int = 0,
) -> tuple[Invariant, Checked] | str:
    """A checked certificate of K = proved, or why none was found."""
    cell = RnnCell(weights, tanh_error)
    try:
        entry_lo, entry_hi, entry_keys, _ = decide.entries(cell, proved, key_digits)
    except CertificateError as exc:
        return str(exc)
    starts = (entry_lo + entry_hi) / 2
    samples = _samples(weights, starts, entry_keys, key_digits, seed)
    centres, axes, widths = _initial(samples, cell.state_size)
    after = decide.successors(len(centres))
    for _ in range(ROUNDS):
        invariant = Invariant(proved, key_digits, centres, axes * widths[:, None, :])
        try:
            return invariant, decide.check(weights, invariant, tanh_error)
        except CertificateError as exc:
            failure = str(exc)
        sets = decide.sets_of(invariant)
        need = widths.copy()
        # |M (x - c)| per axis is in units of the set's half-widths: scale back to lengths
        entry = decide.coordinates(sets, entry_keys, entry_lo, entry_hi) * widths[entry_keys]
        np.maximum.at(need, entry_keys, entry * GROWTH)
        step = decide.step_coordinates(cell, sets) * widths[after]  # (S, 10, H)
        np.maximum.at(need, after.ravel(), step.reshape(-1, cell.state_size) * GROWTH)
        if need.max() > WIDEST:
            return f"the sets grow past tanh's range ({failure})"
        if np.array_equal(need, widths):  # the readout failed, not containment
            return failure
        widths = need
    return f"no fixed point in {ROUNDS} rounds ({failure})"


def decide_carry(
    weights: RnnWeights,
    answer: Callable[[str], str],
    key_digits: int = 2,
    tanh_error: float = DEFAULT_TANH_ERROR,
    limit: int = CARRY_LIMIT,
) -> Decision:
    """The largest K the certificate proves (up to `limit`), and an input of run K + 1 that
    `answer` (the served graph) gets wrong, when one is found."""
    start = perf_counter()
    cell = RnnCell(weights, tanh_error)
    top = longest_points(cell, key_digits, limit)
    proved, invariant, checked, reason = -1, None, None, "no run of nines is proved"
    tried: dict[int, tuple[Invariant, Checked] | str] = {}

    def attempt(k: int) -> bool:
        tried[k] = fit(weights, k, key_digits, tanh_error)
        return not isinstance(tried[k], str)

    if top >= 0:
        if attempt(top):
            proved = top
        elif attempt(0):
            low, high = 0, top
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if attempt(middle) else (low, middle)
            proved = low
        found = tried.get(proved) if proved >= 0 else None
        if isinstance(found, tuple):
            invariant, checked = found
        failed = tried.get(proved + 1, tried.get(top if proved < top else -2))
        reason = (
            failed
            if isinstance(failed, str)
            else (f"the carrying or absorbed states of a run of {proved + 1} nines read wrong")
        )
    # the failing input: at K + 1 when decided exactly, else where the tight states fail
    refuted, got = _refute(answer, proved + 1)
    if refuted is None and top > proved:
        refuted, got = _refute(answer, top + 1)
    return Decision(proved, invariant, checked, refuted, got, perf_counter() - start, reason)


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


def decide_file(model: Path, key_digits: int = 2, limit: int = CARRY_LIMIT) -> str:
    """Decide a shipped model (MODEL.onnx, MODEL.json) without retraining it: write
    MODEL.cert.npz when a K >= 0 is proved (and remove a stale one otherwise) and the decision
    on the card; one line saying what was decided."""
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

    decision = decide_carry(weights, answer, key_digits, limit=limit)
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
    return card_schema.Decision(
        method=decide.METHOD,
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
    shipped = decision.certificate_file or "no certificate"
    return f"proved K = {proved}; {refuted}; {shipped}"
