"""The search for core.decide's one-step certificate: copying sets keyed by the last digits,
each mapped into its successor's in one step.

The sets are fitted from simulated reachable states (float64 trajectories from the first
copying states through random digits, and histories steered into each key, grouped by key):
each key's set is a box in the principal axes of its states, then every set is grown where the
checker's own bounds say an image or an entry pokes out, until nothing does (a fixed point) or
a set grows past tanh's range. When growth fails, the keys whose incoming images poke out
furthest (or whose sets grew most) are split by one older digit, with every key that could
lead into them (so successors stay determined), and the sets refitted; the search gives up
when the keys would pass MAX_KEYS. Only core.decide.check decides: the search may be wrong,
never the certificate.
"""

from dataclasses import replace

import numpy as np

from core import copying, decide
from core.cells import RnnCell
from core.certify import DEFAULT_TANH_ERROR
from core.copying import CertificateError, Invariant
from core.decide import Checked
from core.interval import Array
from core.weights import RnnWeights
from training import walk_pool

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


def _directed(
    weights: RnnWeights, starts: Array, keys: copying.Ints, rng: np.random.Generator
) -> list[Array]:
    """Float64 copying states whose history ends in each key: from a random first copying
    state, a few random digits, then the key's digits (DIRECTED per key)."""
    shift = weights.w_ih.T + weights.b_ih + weights.b_hh  # (10, H)
    depth = copying.depths(keys)
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
    weights: RnnWeights, starts: Array, tails: copying.Ints, keys: copying.Ints, seed: int
) -> list[Array]:
    """Float64 copying states reached from the first copying states, by key: random walks
    from them, and histories steered into each key."""
    rng = np.random.default_rng(seed)
    unit = 10**copying.MAX_DEPTH
    shift = weights.w_ih.T + weights.b_ih + weights.b_hh  # (10, H)
    picks = rng.integers(0, len(starts), TRAJECTORIES)
    states, history = starts[picks], tails[picks]
    found: list[list[Array]] = [[s] for s in _directed(weights, starts, keys, rng)]
    chunks_states, chunks_keys = [starts], [copying.key_index(keys, tails)]
    for _ in range(STEPS):
        digits = rng.integers(0, 10, TRAJECTORIES)
        states = np.tanh(states @ weights.w_hh.T + shift[digits])
        history = (history * 10 + digits) % unit
        chunks_states.append(states)
        chunks_keys.append(copying.key_index(keys, history))
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
    entry: tuple[Array, Array, copying.Ints],
    tanh_error: float,
) -> tuple[Invariant, Checked] | tuple[str, Array]:
    """Grow the fitted sets where the checker's bounds say an image or an entry pokes out,
    until the certificate checks; else why not, and how much each set had to grow."""
    keys = invariant.codes()
    widths = np.linalg.norm(invariant.shapes, axis=1)  # (S, H): the axes are orthonormal
    axes = invariant.shapes / widths[:, None, :]
    first = widths.copy()
    entry_lo, entry_hi, entry_tails = entry
    entry_keys = copying.key_index(keys, entry_tails)
    failure = "no round"
    for _ in range(ROUNDS):
        invariant = replace(invariant, shapes=axes * widths[:, None, :])
        try:
            return invariant, walk_pool.check(weights, invariant, tanh_error)
        except CertificateError as exc:
            failure = str(exc)
        sets = copying.sets_of(invariant)
        need = widths.copy()
        # |M (x - c)| per axis is in units of the set's half-widths: scale back to lengths
        inside = copying.coordinates(sets, entry_keys, entry_lo, entry_hi) * widths[entry_keys]
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
    sets = copying.sets_of(invariant)
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
    keys: copying.Ints | None = None,
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
    keys = copying.uniform_keys(key_digits) if keys is None else keys
    failure = "no round"
    for _ in range(REFINES + 1):
        samples = _samples(weights, starts, tails, keys, seed)
        centres, axes, widths = _initial(samples, cell.state_size)
        depth = int(copying.depths(keys).max())
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


def deepen(keys: copying.Ints, targets: copying.Ints) -> copying.Ints:
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
    return np.asarray(sorted(copying.code(key) for key in codes), dtype=np.int64)
