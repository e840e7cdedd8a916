"""A proof of the reliable carry length: every input whose trailing run of nines is at most K
gets its whole answer exactly right, at every length. K may be "unbounded".

Adding one reads digits least significant first with a carry that starts at 1. An input whose
trailing run is exactly j nines goes through three phases, and each has its boxes (per-unit
intervals) that hold every hidden state the network can reach there:

- carrying: after i <= j nines, one state (a tight box: rounding only); the right digit is 0;
- absorbed: the digit d in 0-8 after the nines, read with carry 1; right digit d + 1. One box
  per d, the join over every j <= K;
- copying: every later digit e (leading zeros and the extra zero step are just digit 0) is read
  with carry 0; right digit e. Boxes keyed by (steps since the carry was absorbed, capped at
  TRANSIENT, last digit e): right after the carry the state is still settling, and keeping
  those steps apart keeps the boxes of the long copying phase small. The capped boxes are
  pushed through every digit until they hold their own image: a fixed point, so they cover
  every length.

If on every box the right digit's logit beats every other everywhere in the box, every output
digit of every such input is right. K grows one nine at a time (boxes only grow, so a larger K
needs larger boxes) until a box fails. K = "unbounded" when a box B of carrying states maps
into itself under 9 and the absorbed states from B pass too: then every run of nines, however
long, stays in B. B is sought by joining the chain's box with its image under 9 and, where
reading a 9 contracts too slowly for that (the chain still creeping to its limit after
thousands of nines), from the hull of the chain's box and the map's fixed point, grown by
epsilon-inflation; either way only B's own image decides. K = -1 when even inputs without a
trailing nine are not proved.

The cell is a tanh RNN, a GRU or an LSTM (core.cells); an LSTM's state is h and c side by side.

Soundness: the boxes hold the deployed float32 states (core.interval bounds float32 rounding
and the activation error `tanh_error`, allowed on every tanh and sigmoid, and rounds its own
float64 steps outward). The service re-runs this proof on the weights it loads and checks
`tanh_error` against the onnxruntime it runs (core.activation measures each op's tanh and
sigmoid kernels). Pure numpy, no torch.

What a proof established is a CarryProof (core.carry_proof); the card records it as a
Certificate (core.certificate).
"""

import math

import numpy as np

from core.carry_map import step_function
from core.carry_proof import Box, CarryProof, Invariant
from core.cells import Cell, Ints
from core.fixed_points import newton
from core.interval import Array

TRANSIENT = 1  # copying steps kept apart from the steady boxes
# Boxes are keyed by this many last digits. With 1, short runs of nines share boxes with long
# ones and many trained models fail for that alone; 3 costs ten times as much (about 1 s) and
# the service re-runs the proof at every start.
KEY_DIGITS = 2
# onnxruntime 1.32's RNN tanh is off by 1.79e-7 (bench/tanh_error.py): 56x room; its GRU's
# own tanh by 6.1e-7 and its sigmoids by 2.5e-7 at most (core.activation, on its grid).
DEFAULT_TANH_ERROR = 1e-5
# The allowance a proof falls back to where DEFAULT_TANH_ERROR proves less
# (core.certificate.prove_weights): 3.3x the worst kernel above, the GRU's own tanh.
TIGHT_TANH_ERROR = 2e-6
DEFAULT_LIMIT = 10_000  # largest finite K searched (about 0.5 s when every K passes)
MAX_WIDTH = 2.0  # a box wider than tanh's whole range in some unit proves nothing
# Growth of a box is overshot by this much, so a contracting map reaches a box that holds its
# own image in finitely many steps instead of approaching it forever.
OVERSHOOT = 1e-5
# A closed carrying box is also sought from the hull of the chain's box and its limit, grown
# where its image reaches past it by this fraction of its width, for at most this many rounds.
INFLATION = 0.05
INFLATION_ROUNDS = 20
_NINE = 9
_ZERO = np.zeros(1, dtype=np.int64)  # the right digit while carrying


class _BoxFailedError(Exception):
    """A box where the proof breaks: where, and why, in words."""


def _join(lo: Array, hi: Array, new_lo: Array, new_hi: Array) -> tuple[Array, Array, bool]:
    """Boxes grown to hold new ones (overshot where they grew); whether they grew."""
    grew_lo, grew_hi = new_lo < lo, new_hi > hi
    if not (grew_lo.any() or grew_hi.any()):
        return lo, hi, False
    return (
        np.where(grew_lo, new_lo - OVERSHOOT, lo),
        np.where(grew_hi, new_hi + OVERSHOOT, hi),
        True,
    )


def _empty(count: int, size: int) -> tuple[Array, Array]:
    """count boxes that hold nothing yet (lo > hi)."""
    return np.full((count, size), np.inf), np.full((count, size), -np.inf)


class _Prover:
    """The boxes of one proof as K grows; see the module docstring.

    Absorbed and copying boxes are keyed by the last r = key_digits digits read, as the key
    0 .. 10^r - 1 whose last decimal digit is the digit just read. Before the number's start
    the key reads zeros: after j < r - 1 nines, "0..0 9..9 d" is no real history ending in
    the carry (only nines precede d), so short runs of nines keep boxes of their own. Any
    labelling is sound; the keys only split the states into smaller boxes.
    """

    def __init__(
        self, cell: Cell, max_iterations: int, key_digits: int, transient: int, readout: bool
    ) -> None:
        self.cell = cell
        self.readout = readout
        self.max_iterations = max_iterations
        self.key_digits = key_digits
        self.keys = 10**key_digits
        self.transient = transient
        size = cell.state_size
        self.iterations = 0
        self.margin = math.inf
        self.absorbed = _empty(self.keys, size)  # only keys ending in d in 0-8 are reached
        self.copying: list[Box] = []
        self.steady = _empty(self.keys, size)
        self.carrying: list[Box] = []
        self.closure: tuple[Box, int] | None = None
        self.max_width = max_width(cell)

    def push(self, lo: Array, hi: Array) -> tuple[Array, Array]:
        self.iterations += 1
        return self.cell.image(lo, hi)

    def check(self, what: str, lo: Array, hi: Array, right: Ints) -> None:
        """Every reached box must be narrow enough and let its right digit win everywhere."""
        reached = np.flatnonzero(lo[:, 0] <= hi[:, 0])
        lo, hi, right = lo[reached], hi[reached], right[reached]
        excess = (hi - lo) - self.max_width
        if excess.max() > 0:
            box, unit = np.unravel_index(int(excess.argmax()), excess.shape)
            raise _BoxFailedError(
                f"{what} ({_box_name(what, int(reached[box]), self.keys)}) escaped: unit "
                f"{unit} spans [{lo[box, unit]:.3g}, {hi[box, unit]:.3g}]"
            )
        if not self.readout:
            return
        readout = self.cell.readout(lo, hi, right)
        worst = int(readout.slack.argmin())
        if readout.slack[worst] <= 0:
            raise _BoxFailedError(
                f"{what} ({_box_name(what, int(reached[worst]), self.keys)}) reaches hidden "
                f"states where digit {int(readout.rival[worst])} scores within the rounding "
                f"bound of the right digit {int(right[worst])} or above it (worst logit gap "
                f"{readout.gap[worst]:.4g})"
            )
        self.margin = min(self.margin, float(readout.gap.min()))

    def absorb(self, lo: Array, hi: Array, nines: int) -> bool:
        """Add carrying states (N, S) after `nines` nines: their images under 0-8 join the
        absorbed boxes. Re-checks everything downstream when those grow; False if they did not.
        """
        image_lo, image_hi = self.push(lo, hi)  # (N, 10, S)
        # Key of "nines, then d": the last r digits, zeros before the start.
        seen = min(nines, self.key_digits - 1)
        base = (10**seen - 1) * 10 % self.keys  # ..0 9..9 0: the nines, then a 0 to add d to
        new_lo, new_hi = _empty(self.keys, self.cell.state_size)
        new_lo[base : base + 9] = image_lo[:, :9].min(axis=0)
        new_hi[base : base + 9] = image_hi[:, :9].max(axis=0)
        grown_lo, grown_hi, grew = _join(*self.absorbed, new_lo, new_hi)
        if not grew:
            return False
        self.check("the absorbed carry", grown_lo, grown_hi, np.arange(self.keys) % 10 + 1)
        self.absorbed = (grown_lo, grown_hi)
        self._copying()
        return True

    def _next(self, lo: Array, hi: Array, keys: Ints) -> tuple[Array, Array]:
        """Push reached boxes (N, S) with their keys (N,) through every digit; join the
        images into the boxes of their new keys, (10^r, S)."""
        reached = np.flatnonzero(lo[:, 0] <= hi[:, 0])
        image_lo, image_hi = self.push(lo[reached], hi[reached])  # (n, 10, S)
        new_keys = (keys[reached, None] * 10 + np.arange(10)) % self.keys  # (n, 10)
        out_lo, out_hi = _empty(self.keys, self.cell.state_size)
        np.minimum.at(out_lo, new_keys.ravel(), image_lo.reshape(-1, image_lo.shape[-1]))
        np.maximum.at(out_hi, new_keys.ravel(), image_hi.reshape(-1, image_hi.shape[-1]))
        return out_lo, out_hi

    def _copying(self) -> None:
        """Push the absorbed boxes through TRANSIENT copying steps, then to a fixed point."""
        every = np.arange(self.keys)
        right = every % 10  # copying: the right digit is the digit just read
        lo, hi = self._next(*self.absorbed, every)
        self.copying = []
        for step in range(1, self.transient + 1):
            self.check(f"copying step {step}", lo, hi, right)
            self.copying.append((lo, hi))
            lo, hi = self._next(lo, hi, every)
        # The steady boxes hold every state after more than `transient` copying steps.
        steady_lo, steady_hi, _ = _join(*self.steady, lo, hi)
        for _ in range(self.max_iterations):
            self.check("the steady copying boxes", steady_lo, steady_hi, right)
            new_lo, new_hi = self._next(steady_lo, steady_hi, every)
            steady_lo, steady_hi, grew = _join(steady_lo, steady_hi, new_lo, new_hi)
            if not grew:
                self.steady = (steady_lo, steady_hi)
                return
        raise _BoxFailedError(
            f"the steady copying boxes still grew after {self.max_iterations} iterations"
        )

    def closed_carry(self, lo: Array, hi: Array) -> tuple[Array, Array] | None:
        """A box around a carrying state that holds its own image under 9, if one is found."""
        box_lo, box_hi = lo, hi
        for _ in range(64):
            image_lo, image_hi = self.push(box_lo[None], box_hi[None])
            nine_lo, nine_hi = image_lo[0, _NINE], image_hi[0, _NINE]
            box_lo, box_hi, grew = _join(box_lo, box_hi, nine_lo, nine_hi)
            if not grew:
                return box_lo, box_hi
            if np.any(box_hi - box_lo > self.max_width):
                break
        return self.inflated_carry(lo, hi)

    def inflated_carry(self, lo: Array, hi: Array) -> tuple[Array, Array] | None:
        """A box that holds the carrying box (lo, hi), a fixed point of reading a 9 (Newton's,
        from the box's centre) and its own image under 9, if one is found: the hull of box and
        fixed point, grown where the image reaches past it by INFLATION of its width
        (epsilon-inflation).

        Where reading a 9 contracts slowly (a GRU's update gate near 1), the chain is still far
        from its limit after thousands of nines, and joining box and image reaches it like a
        geometric series of ratio near 1: this box holds the whole way to the limit at once."""
        point = newton(step_function(self.cell.weights), (lo + hi) / 2, _NINE)
        if point is None:
            return None
        box_lo, box_hi = np.minimum(lo, point), np.maximum(hi, point)
        for _ in range(INFLATION_ROUNDS):
            if np.any(box_hi - box_lo > self.max_width):
                return None
            image_lo, image_hi = self.push(box_lo[None], box_hi[None])
            nine_lo, nine_hi = image_lo[0, _NINE], image_hi[0, _NINE]
            below, above = nine_lo < box_lo, nine_hi > box_hi
            if not (below.any() or above.any()) and np.isfinite(nine_hi - nine_lo).all():
                return box_lo, box_hi
            pad = INFLATION * (np.maximum(nine_hi, box_hi) - np.minimum(nine_lo, box_lo))
            box_lo = np.where(below, nine_lo - pad - OVERSHOOT, box_lo)
            box_hi = np.where(above, nine_hi + pad + OVERSHOOT, box_hi)
        return None


def max_width(cell: Cell) -> Array:
    """The widest box of each unit the proof goes on with, (S,): MAX_WIDTH, or the cell's own
    `escape_width` when it has one (an LSTM's cell state is not bounded by tanh's range)."""
    own = getattr(cell, "escape_width", None)
    return np.full(cell.state_size, MAX_WIDTH) if own is None else np.asarray(own, dtype=float)


def _box_name(what: str, index: int, keys: int) -> str:
    if what.startswith("carrying"):
        return "output 0"
    width = len(str(keys - 1))
    return f"digits {str(index).zfill(width)[::-1]} as written, just read"


def _try_unbounded(prover: _Prover, lo: Array, hi: Array, nines: int) -> _Prover | None:
    """The prover extended to every run of nines from this carrying state on, if it passes.

    The state is after `nines` >= key_digits - 1 nines, so every state in the closed box has
    the same key.
    """
    closed = prover.closed_carry(lo, hi)
    if closed is None:
        return None
    trial = _Prover(
        prover.cell, prover.max_iterations, prover.key_digits, prover.transient, prover.readout
    )
    trial.absorbed, trial.steady = prover.absorbed, prover.steady
    trial.copying, trial.carrying = prover.copying, prover.carrying
    trial.margin, trial.iterations = prover.margin, prover.iterations
    trial.closure = (closed, nines)
    try:
        trial.check("carrying through any run of nines", closed[0][None], closed[1][None], _ZERO)
        trial.absorb(closed[0][None], closed[1][None], nines)
    except _BoxFailedError:
        prover.iterations = trial.iterations
        return None
    return trial


def _attempt_closure(j: int) -> bool:
    """When to look for a closed carry box: every j up to 64, then at powers of two."""
    return j <= 64 or j & (j - 1) == 0


def prove_carry(
    cell: Cell,
    limit: int = DEFAULT_LIMIT,
    *,
    key_digits: int = KEY_DIGITS,
    transient: int = TRANSIENT,
    max_iterations: int = 2000,
    readout: bool = True,
) -> CarryProof:
    """The largest K the boxes prove (None: unbounded), up to `limit` for a finite K.

    Deterministic: the service re-runs it with the card's settings and must reach the same K.
    readout=False builds the boxes without checking the readout on them: no proof of any
    answer, only the invariant (for testing that the boxes hold the deployed states).
    """
    if limit < 0 or key_digits < 1 or transient < 0 or max_iterations < 1:
        raise ValueError("need limit >= 0, key_digits >= 1, transient >= 0, max_iterations >= 1")
    prover = _Prover(cell, max_iterations, key_digits, transient, readout)
    lo = hi = cell.initial()[None]  # (1, S): the state before any digit
    proved = -1
    reason = "no trailing run of nines is proved"
    for j in range(limit + 1):
        # The proof so far, kept if this j fails (the attempt replaces, never mutates, boxes).
        kept = (prover.margin, prover.absorbed, prover.copying, prover.steady)
        try:
            if j > 0:
                image_lo, image_hi = prover.push(lo, hi)
                lo, hi = image_lo[:, _NINE], image_hi[:, _NINE]
                prover.check(f"carrying after {j} nines", lo, hi, _ZERO)
                prover.carrying.append((lo[0], hi[0]))
            prover.absorb(lo, hi, j)
        except _BoxFailedError as failure:
            reason = f"a run of {j} nines is not proved: {failure}"
            prover.margin, prover.absorbed, prover.copying, prover.steady = kept
            prover.carrying = prover.carrying[: max(proved, 0)]
            break
        proved = j
        if j >= max(1, key_digits - 1) and _attempt_closure(j):
            extended = _try_unbounded(prover, lo[0], hi[0], j)
            if extended is not None:
                return _result(extended, None, limit, "")
    else:
        reason = f"every run of up to {limit} nines is proved; longer runs were not tried"
    return _result(prover, proved, limit, reason)


def _result(prover: _Prover, proved: int | None, limit: int, reason: str) -> CarryProof:
    margin = prover.margin if math.isfinite(prover.margin) else None
    reached = np.isfinite(prover.absorbed[0][:, 0]).sum()
    carry_boxes = len(prover.carrying) + (prover.closure is not None)
    boxes = int(reached) + prover.keys * (prover.transient + 1) + carry_boxes
    if proved is None:
        reason = (
            f"a box of carrying states maps into itself under 9 and the {boxes} boxes hold every "
            "reachable state"
        )
        if margin is not None:
            reason += (
                f"; on each the right digit's logit beats every other by at least {margin:.4g}: "
                "every digit of every input is right, at every length"
            )
    invariant = Invariant(
        key_digits=prover.key_digits,
        carrying=prover.carrying,
        closure=prover.closure,
        absorbed=prover.absorbed,
        copying=prover.copying,
        steady=prover.steady,
    )
    return CarryProof(
        invariant=invariant,
        key_digits=prover.key_digits,
        transient=prover.transient,
        reliable=proved,
        margin=margin,
        iterations=prover.iterations,
        boxes=boxes,
        limit=limit,
        reason=reason,
    )
