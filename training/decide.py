"""The search behind core.decide's certificate: find the largest K whose invariant checks, and a
served input of run K + 1 that is answered wrong.

The copying sets are fitted from simulated reachable states (float64 trajectories from the
first copying states through random digits, and histories steered into each key, grouped by
key): each key's set is a box in the principal axes of its states, then every set is grown
where the checker's own bounds say an image or an entry pokes out, until nothing does (a fixed
point) or a set grows past tanh's range. When growth fails, the keys whose incoming images
poke out furthest (or whose sets grew most) are split by one older digit, with every key that
could lead into them (so successors stay determined), and the sets refitted; the search gives
up when the keys would pass MAX_KEYS. Only core.decide.check decides: the search may be
wrong, never the certificate.
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
DIRECTED = 48  # simulated histories ending in each key
PREFIX = 8  # the most random digits read before a directed history's key
ROUNDS = 60  # growth rounds before deepening the keys that grew
REFINES = 8  # deepening rounds before giving up
GROWTH = 1.02  # a set grows past what is needed by this factor, so the growth ends
FLOOR = 1e-5  # the least half-width of a set along any axis (keeps shapes invertible)
WIDEST = 2.0  # a set wider than this along an axis proves nothing: give up
GROW_FROM = 4.0  # keys the fitted sets' images reach further out of than this are deepened
MAX_KEYS = 1000  # the most keys a certificate may have (its size: 2 KiB a key at H = 16)
SPLIT = 2.0  # a key whose set had to grow by more than this factor is deepened
DEEPEST = 10  # the deepest key the search makes
CARRY_LIMIT = 1000  # the longest run of nines tried
# The walked certificate (core.decide.walk), tried when the one-step sets do not close:
WALK_KEYS = 2  # sets keyed by the last two digits
WALK_STEPS = 6  # digit strings followed up to this length before they must be inside
WALK_TRAJECTORIES = 20000  # simulated histories, each WALK_LENGTH copying digits long
WALK_LENGTH = 24
WALK_FLOOR = 3e-3  # the least half-width along any axis: the tanh band's room
WALK_GROWTH = 1.05  # a set grows past what an open leaf needs by this factor
WALK_ROUNDS = 4


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


def _directed(
    weights: RnnWeights, starts: Array, keys: decide.Ints, rng: np.random.Generator
) -> list[Array]:
    """Float64 copying states whose history ends in each key: from a random first copying
    state, a few random digits, then the key's digits (DIRECTED per key)."""
    shift = weights.w_ih.T + weights.b_ih + weights.b_hh  # (10, H)
    depth = decide.depths(keys)
    count = len(keys) * DIRECTED
    owner = np.repeat(np.arange(len(keys)), DIRECTED)
    prefix = rng.integers(0, PREFIX + 1, count)
    longest = int(depth.max()) + PREFIX
    states = starts[rng.integers(0, len(starts), count)]
    value = keys - 10**depth
    for step in range(longest):
        # step counts back from the end: the key's digits last, random ones before
        back = longest - 1 - step
        mine = depth[owner]
        key_digit = (value[owner] // 10 ** np.minimum(back, 18)) % 10
        digits = np.where(back < mine, key_digit, rng.integers(0, 10, count))
        active = back < mine + prefix
        moved = np.tanh(states @ weights.w_hh.T + shift[digits])
        states = np.where(active[:, None], moved, states)
    order = np.argsort(owner, kind="stable")
    return np.split(states[order], len(keys))[: len(keys)] if len(keys) else []


def _samples(
    weights: RnnWeights, starts: Array, tails: decide.Ints, keys: decide.Ints, seed: int
) -> list[Array]:
    """Float64 copying states reached from the first copying states, by key: random walks
    from them, and histories steered into each key."""
    rng = np.random.default_rng(seed)
    unit = 10**decide.MAX_DEPTH
    shift = weights.w_ih.T + weights.b_ih + weights.b_hh  # (10, H)
    picks = rng.integers(0, len(starts), TRAJECTORIES)
    states, history = starts[picks], tails[picks]
    found: list[list[Array]] = [[s] for s in _directed(weights, starts, keys, rng)]
    chunks_states, chunks_keys = [starts], [decide.key_index(keys, tails)]
    for _ in range(STEPS):
        digits = rng.integers(0, 10, TRAJECTORIES)
        states = np.tanh(states @ weights.w_hh.T + shift[digits])
        history = (history * 10 + digits) % unit
        chunks_states.append(states)
        chunks_keys.append(decide.key_index(keys, history))
    every, owner = np.concatenate(chunks_states), np.concatenate(chunks_keys)
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(len(keys) + 1))
    for key in range(len(keys)):
        found[key].append(every[order[bounds[key] : bounds[key + 1]]])
    return [np.concatenate(f) for f in found]


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


def _grow(
    weights: RnnWeights,
    cell: RnnCell,
    invariant: Invariant,
    entry: tuple[Array, Array, decide.Ints],
    tanh_error: float,
) -> tuple[Invariant, Checked] | tuple[str, Array]:
    """Grow the fitted sets where the checker's bounds say an image or an entry pokes out,
    until the certificate checks; else why not, and how much each set had to grow."""
    keys = invariant.codes()
    widths = np.linalg.norm(invariant.shapes, axis=1)  # (S, H): the axes are orthonormal
    axes = invariant.shapes / widths[:, None, :]
    first = widths.copy()
    entry_lo, entry_hi, entry_tails = entry
    entry_keys = decide.key_index(keys, entry_tails)
    failure = "no round"
    for _ in range(ROUNDS):
        invariant = replace(invariant, shapes=axes * widths[:, None, :])
        try:
            return invariant, decide.check(weights, invariant, tanh_error)
        except CertificateError as exc:
            failure = str(exc)
        sets = decide.sets_of(invariant)
        need = widths.copy()
        # |M (x - c)| per axis is in units of the set's half-widths: scale back to lengths
        inside = decide.coordinates(sets, entry_keys, entry_lo, entry_hi) * widths[entry_keys]
        np.maximum.at(need, entry_keys, inside * GROWTH)
        after = sets.after
        step = decide.step_coordinates(cell, sets) * widths[after]  # (S, 10, H)
        np.maximum.at(need, after.ravel(), step.reshape(-1, cell.state_size) * GROWTH)
        if need.max() > WIDEST:
            failure = f"the sets grow past tanh's range ({failure})"
            break
        if np.array_equal(need, widths):  # the readout failed, not containment
            break
        widths = need
    return failure, (widths / first).max(axis=1)


def _poking(cell: RnnCell, invariant: Invariant) -> Array:
    """Per key t, how far the images of the sets that lead into t reach out of P_t, in
    units of P_t's half-widths (at most 1: inside), (S,)."""
    sets = decide.sets_of(invariant)
    reach = decide.step_coordinates(cell, sets).max(axis=2)  # (S, 10)
    worst = np.zeros(len(sets.keys))
    np.maximum.at(worst, sets.after.ravel(), reach.ravel())
    return worst


def fit(
    weights: RnnWeights,
    proved: int,
    key_digits: int,
    tanh_error: float = DEFAULT_TANH_ERROR,
    seed: int = 0,
    keys: decide.Ints | None = None,
) -> tuple[Invariant, Checked] | str:
    """A checked certificate of K = proved, or why none was found. The keys start at
    key_digits digits (or as given); the keys that images poke out of are deepened (with
    the keys that lead into them), and the sets refitted, up to REFINES times while the
    keys stay within MAX_KEYS."""
    cell = RnnCell(weights, tanh_error)
    try:
        entry_lo, entry_hi, tails, _ = decide.entries(cell, proved)
    except CertificateError as exc:
        return str(exc)
    starts = (entry_lo + entry_hi) / 2
    keys = decide.uniform_keys(key_digits) if keys is None else keys
    failure = "no round"
    for _ in range(REFINES + 1):
        samples = _samples(weights, starts, tails, keys, seed)
        centres, axes, widths = _initial(samples, cell.state_size)
        depth = int(decide.depths(keys).max())
        invariant = Invariant(proved, depth, centres, axes * widths[:, None, :], keys)
        poking = _poking(cell, invariant)
        grown = _grow(weights, cell, invariant, (entry_lo, entry_hi, tails), tanh_error)
        if isinstance(grown[0], Invariant):
            return grown
        failure, growth = grown
        # deepen where the fitted sets' images poke far out; else where the sets grew most
        far = poking > GROW_FROM
        targets = keys[far] if far.any() else keys[growth > SPLIT]
        if len(targets) == 0:
            return failure
        deeper = deepen(keys, targets)
        if len(deeper) > MAX_KEYS:
            return f"the keys would pass {MAX_KEYS} ({len(deeper)}): {failure}"
        keys = deeper
    return f"no certificate after {REFINES} deepenings ({failure})"


def _walk_samples(
    weights: RnnWeights, proved: int, rng: np.random.Generator
) -> tuple[Array, decide.Ints]:
    """Float64 copying states and their histories (the last MAX_DEPTH digits' value): a run
    of at most `proved` nines, an absorbing digit, then WALK_LENGTH random digits."""
    shift = weights.w_ih.T + weights.b_ih + weights.b_hh
    unit = 10**decide.MAX_DEPTH
    chain = [np.zeros(weights.hidden_size)]
    for _ in range(proved):
        chain.append(np.tanh(weights.w_hh @ chain[-1] + shift[9]))
    run = rng.integers(0, proved + 1, WALK_TRAJECTORIES)
    absorbing = rng.integers(0, 9, WALK_TRAJECTORIES)
    states = np.tanh(np.asarray(chain)[run] @ weights.w_hh.T + shift[absorbing])
    history = ((10 ** np.minimum(run, decide.MAX_DEPTH) - 1) * 10 + absorbing) % unit
    found, tails = [], []
    for _ in range(WALK_LENGTH):
        digits = rng.integers(0, 10, WALK_TRAJECTORIES)
        states = np.tanh(states @ weights.w_hh.T + shift[digits])
        history = (history * 10 + digits) % unit
        found.append(states)
        tails.append(history)
    return np.concatenate(found), np.concatenate(tails)


def _principal_boxes(states: Array, owner: decide.Ints, count: int) -> tuple[Array, Array, Array]:
    """Per key: the centre, principal axes and half-widths of the box in those axes that
    holds its states (at least WALK_FLOOR wide along every axis)."""
    size = states.shape[1]
    centres, axes = np.zeros((count, size)), np.tile(np.eye(size), (count, 1, 1))
    widths = np.full((count, size), WALK_FLOOR)
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(count + 1))
    for key in range(count):
        mine = states[order[bounds[key] : bounds[key + 1]]]
        if len(mine) < 2:
            continue
        mean = mine.mean(axis=0)
        _, _, vt = np.linalg.svd(mine - mean, full_matrices=False)
        if vt.shape[0] != size:
            continue
        along = (mine - mean) @ vt.T
        low, high = along.min(axis=0), along.max(axis=0)
        centres[key] = mean + vt.T @ ((low + high) / 2)
        axes[key] = vt.T
        widths[key] = np.maximum((high - low) / 2, WALK_FLOOR)
    return centres, axes, widths


def fit_walk(
    weights: RnnWeights, proved: int, tanh_error: float = DEFAULT_TANH_ERROR, seed: int = 0
) -> tuple[Invariant, Checked] | str:
    """A checked certificate of K = proved whose sets are followed by core.decide.walk for
    up to WALK_STEPS digits, or why none was found. The sets are boxes in the principal axes
    of simulated copying states keyed by their last WALK_KEYS digits, grown where an entry or
    a walk's open leaf pokes out, for up to WALK_ROUNDS rounds."""
    cell = RnnCell(weights, tanh_error)
    try:
        entry_lo, entry_hi, tails, _ = decide.entries(cell, proved)
    except CertificateError as exc:
        return str(exc)
    keys = decide.uniform_keys(WALK_KEYS)
    states, history = _walk_samples(weights, proved, np.random.default_rng(seed))
    centres, axes, widths = _principal_boxes(states, decide.key_index(keys, history), len(keys))
    entry_keys = decide.key_index(keys, tails)
    failure = "no round"
    for _ in range(WALK_ROUNDS):
        invariant = Invariant(
            proved, WALK_KEYS, centres, axes * widths[:, None, :], keys, WALK_STEPS
        )
        sets = decide.sets_of(invariant)
        need = widths.copy()
        inside = decide.coordinates(sets, entry_keys, entry_lo, entry_hi)
        np.maximum.at(need, entry_keys, inside * widths[entry_keys] * WALK_GROWTH)
        walked = decide.walk(cell, sets, WALK_STEPS, keep_going=True)
        if walked.slack <= 0:
            return walked.failure or "a walk's readout fails"
        if walked.failure is None and inside.max() <= sets.limit[entry_keys].min():
            try:
                return invariant, decide.check(weights, invariant, tanh_error)
            except CertificateError as exc:
                return str(exc)
        failure = walked.failure or "an entry leaves its set"
        targets = walked.open_targets
        np.maximum.at(need, targets, walked.open_coordinates * widths[targets] * WALK_GROWTH)
        if need.max() > WIDEST:
            return f"the walked sets grow past tanh's range ({failure})"
        widths = need
    return f"no walked certificate after {WALK_ROUNDS} rounds ({failure})"


def deepen(keys: decide.Ints, targets: decide.Ints) -> decide.Ints:
    """Split the target keys into the ten keys one digit older, then split every key that
    could lead into a key more than one digit deeper than itself, until none does: the
    keys stay a complete suffix code whose successors are determined by key and digit."""
    codes = {str(key)[1:] for key in map(int, keys)}

    def split(key: str) -> None:
        codes.discard(key)
        codes.update(f"{a}{key}" for a in range(10))

    for target in map(int, targets):
        if len(str(target)) - 1 < DEEPEST:
            split(str(target)[1:])
    changed = True
    while changed:
        inner = {key[i:] for key in codes for i in range(1, len(key))}
        changed = False
        for key in sorted(codes):
            if any(f"{key}{e}" in inner for e in range(10)):
                split(key)
                changed = True
    return np.asarray(sorted(decide.code(key) for key in codes), dtype=np.int64)


def decide_carry(
    weights: RnnWeights,
    answer: Callable[[str], str],
    key_digits: int = 2,
    tanh_error: float = DEFAULT_TANH_ERROR,
    limit: int = CARRY_LIMIT,
    walk: bool = False,
) -> Decision:
    """The largest K the certificate proves (up to `limit`), and an input of run K + 1 that
    `answer` (the served graph) gets wrong, when one is found."""
    start = perf_counter()
    cell = RnnCell(weights, tanh_error)
    top = longest_points(cell, limit)
    proved, invariant, checked, reason = -1, None, None, "no run of nines is proved"
    tried: dict[int, tuple[Invariant, Checked] | str] = {}

    def attempt(k: int) -> bool:
        tried[k] = fit(weights, k, key_digits, tanh_error)
        if walk and isinstance(tried[k], str):
            walked = fit_walk(weights, k, tanh_error)
            if not isinstance(walked, str):
                tried[k] = walked
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


def decide_file(
    model: Path, key_digits: int = 2, limit: int = CARRY_LIMIT, walk: bool = False
) -> str:
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

    decision = decide_carry(weights, answer, key_digits, limit=limit, walk=walk)
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
    walked = decision.invariant is not None and decision.invariant.steps > 1
    return card_schema.Decision(
        method=decide.WALK_METHOD if walked else decide.METHOD,
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
